"""Generic CSV/TSV tables: one row per audio file (or segment), columns mapped to fields."""

from __future__ import annotations

import csv
from pathlib import Path

from ..manifest import SPLITS, ManifestError, assign_splits
from ..taxonomy import normalize
from ._probe import probe

# field -> column names tried in order when no explicit mapping is given
GUESSES = {
    "audio": ("audio", "path", "relpath", "file", "filename", "wav", "audio_path"),
    "id": ("id", "utterance_id", "utt_id", "key"),
    "speaker": ("speaker", "speaker_id", "spk", "client_id"),
    "text": ("text", "transcript", "sentence", "transcription"),
    "split": ("split", "subset", "partition"),
    "start": ("start", "offset"),
    "end": ("end",),
    "dataset": ("dataset", "corpus"),
    "license": ("license",),
}


def _delimiter(path: Path, sample: str) -> str:
    if path.suffix.lower() == ".tsv":
        return "\t"
    if path.suffix.lower() == ".csv":
        return ","
    return csv.Sniffer().sniff(sample, delimiters=",\t;|").delimiter


def build_table(
    table: str | Path,
    columns: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
    where: dict[str, str] | None = None,
    root: str | Path | None = None,
    dataset: str | None = None,
    license: str | None = None,
    split: str | None = None,
    auto_split: bool = False,
    seed: int = 0,
) -> list[dict]:
    """Records from a CSV/TSV table.

    columns: field -> column (overrides the guesses in GUESSES); labels: task -> column
    (values are normalized through the taxonomy); where: column -> required prefix (row
    filter); root: folder relative audio paths are under (default: the table's folder).
    Duration, sample rate and channels come from the audio headers.
    """
    table = Path(table)
    if not table.is_file():
        raise ManifestError(f"{table}: no such table")
    text = table.read_text(encoding="utf-8-sig")
    rows = list(csv.DictReader(text.splitlines(), delimiter=_delimiter(table, text[:4096])))
    if not rows:
        raise ManifestError(f"{table}: no rows")
    header = list(rows[0])
    colmap = {}
    for fld, names in GUESSES.items():
        hit = next((n for n in names if n in header), None)
        if hit:
            colmap[fld] = hit
    colmap.update(columns or {})
    for fld, col in list(colmap.items()) + [(t, c) for t, c in (labels or {}).items()]:
        if col not in header:
            raise ManifestError(f"{table}: column {col!r} (for {fld}) not in header {header}")
    if "audio" not in colmap:
        raise ManifestError(f"{table}: no audio path column; tried {GUESSES['audio']}")
    base = Path(root) if root else table.parent
    records = []
    for _n, row in enumerate(rows, 2):
        if any(not row.get(c, "").startswith(v) for c, v in (where or {}).items()):
            continue
        path = base / row[colmap["audio"]]
        dur, sr, ch, frames = probe(path)
        val = {f: (row.get(c) or "").strip() for f, c in colmap.items()}
        start = float(val["start"]) if val.get("start") else 0.0
        end = float(val["end"]) if val.get("end") else None
        seg = (end if end is not None else dur) - start
        rec = {
            "id": val.get("id") or path.stem,
            "audio": str(path.resolve()),
            "start": start,
            "end": end,
            "duration": round(seg, 6),
            "sample_rate": sr,
            "channels": ch,
            "num_samples": frames
            if end is None and start == 0
            else int(round((start + seg) * sr)) - int(round(start * sr)),
            "speaker": val.get("speaker") or None,
            "text": val.get("text") or None,
            "split": split or val.get("split") or "train",
            "dataset": dataset or val.get("dataset") or table.stem,
            "license": license or val.get("license") or "unknown",
        }
        if rec["split"] not in SPLITS:
            rec["split"] = {"dev": "valid", "validation": "valid", "eval": "test"}.get(
                rec["split"], rec["split"]
            )
        if labels:
            rec["labels"] = {t: normalize(t, row[c]) for t, c in labels.items() if row.get(c)}
        if end is not None or start:
            rec["recording_duration"] = round(dur, 6)
        records.append(rec)
    if auto_split:
        records = assign_splits(records, by="speaker", seed=seed)
    return records
