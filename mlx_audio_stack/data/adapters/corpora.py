"""LibriSpeech and Free Spoken Digit Dataset folders."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from ..manifest import SPLITS, ManifestError
from ..taxonomy import normalize
from ._probe import file_record

LIBRISPEECH_LICENSE = "CC-BY-4.0"
FSDD_LICENSE = "CC-BY-SA-4.0"
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def _subset_split(subset: str | None) -> str:
    if subset and subset.startswith("dev"):
        return "valid"
    if subset and subset.startswith("test"):
        return "test"
    return "train"


def read_speakers_txt(path: Path) -> dict[str, dict]:
    """LibriSpeech SPEAKERS.TXT -> {reader id: {"sex": "F", "subset": ..., "name": ...}}."""
    out = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip() or line.startswith(";"):
            continue
        parts = [p.strip() for p in line.split("|")]
        if len(parts) >= 5:
            out[parts[0]] = {"sex": parts[1], "subset": parts[2], "name": " | ".join(parts[4:])}
    return out


def _find_speakers_txt(root: Path) -> Path | None:
    for d in (root, root / "LibriSpeech", root.parent, root.parent.parent):
        if (d / "SPEAKERS.TXT").is_file():
            return d / "SPEAKERS.TXT"
    return None


def build_librispeech(
    root: str | Path,
    split: str | None = None,
    dataset: str = "librispeech",
    license: str = LIBRISPEECH_LICENSE,
) -> list[dict]:
    """Every `<spk>-<chapter>-<utt>.flac` under `root`, with `*.trans.txt` text when present
    and gender from SPEAKERS.TXT. Split from the subset folder (dev-* valid, test-* test)
    unless `split` is given."""
    root = Path(root)
    if not root.is_dir():
        raise ManifestError(f"{root}: not a folder")
    spk_txt = _find_speakers_txt(root)
    speakers = read_speakers_txt(spk_txt) if spk_txt else {}
    texts: dict[str, str] = {}
    for trans in root.rglob("*.trans.txt"):
        for line in trans.read_text(encoding="utf-8").splitlines():
            uid, _, text = line.partition(" ")
            texts[uid] = text.strip()
    records = []
    for flac in sorted(p for p in root.rglob("*") if p.suffix in (".flac", ".wav")):
        uid = flac.stem
        m = re.fullmatch(r"(\d+)-(\d+)-(\d+)", uid)
        if not m:
            continue
        spk = m.group(1)
        subset = next((p for p in flac.parts if re.fullmatch(r"(train|dev|test)-\w+", p)), None)
        meta = speakers.get(spk, {})
        labels = {}
        if meta.get("sex") in ("F", "M"):
            labels["gender"] = normalize("gender", meta["sex"])
        extra = {"chapter": m.group(2), "subset": subset or meta.get("subset")}
        records.append(
            file_record(
                flac,
                uid,
                dataset,
                license,
                split or _subset_split(subset),
                speaker=spk,
                text=texts.get(uid),
                labels={**labels, "speaker_count": "1"},
                extra=extra,
            )
        )
    if not records:
        raise ManifestError(f"{root}: no LibriSpeech-style <spk>-<chapter>-<utt>.flac files")
    return records


def read_fsdd_metadata(path: Path) -> dict[str, dict]:
    """FSDD's metadata.py holds one dict literal; parse it without executing the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict):
            return ast.literal_eval(node.value)
    return {}


def build_fsdd(
    root: str | Path, split: str | None = None, dataset: str = "fsdd", license: str = FSDD_LICENSE
) -> list[dict]:
    """FSDD `recordings/{digit}_{speaker}_{index}.wav`. The corpus convention puts indices
    0-4 in test and the rest in train (note: the same speakers are in both)."""
    root = Path(root)
    rec_dir = root / "recordings" if (root / "recordings").is_dir() else root
    meta_path = root / "metadata.py"
    meta = read_fsdd_metadata(meta_path) if meta_path.is_file() else {}
    if split is not None and split not in SPLITS:
        raise ManifestError(f"split: expected one of {SPLITS}, got {split!r}")
    records = []
    for wav in sorted(rec_dir.glob("*.wav")):
        m = re.fullmatch(r"(\d)_([A-Za-z]+)_(\d+)", wav.stem)
        if not m:
            continue
        digit, spk, idx = int(m.group(1)), m.group(2), int(m.group(3))
        info = meta.get(spk, {})
        labels = {"speaker_count": "1"}
        if info.get("gender"):
            labels["gender"] = normalize("gender", info["gender"])
        extra = {k: info[k] for k in ("accent", "language") if k in info}
        records.append(
            file_record(
                wav,
                wav.stem,
                dataset,
                license,
                split or ("test" if idx < 5 else "train"),
                speaker=spk,
                text=DIGITS[digit],
                labels=labels,
                extra=extra or None,
            )
        )
    if not records:
        raise ManifestError(f"{rec_dir}: no FSDD {{digit}}_{{speaker}}_{{index}}.wav files")
    return records
