"""AMI-style diarization references: RTTM speaker turns (+ optional UEM) over audio files.

Two record layouts: `windows` (fixed windows, each with its active speakers, seconds of
overlap and the `speaker_count` label = most simultaneous talkers, capped at 3) and `turns`
(one record per RTTM turn). RTTM uris are matched to audio file names exactly, else after
Unicode folding (the pyannote debug set spells `trn00` as `trñ00`).
"""

from __future__ import annotations

import unicodedata
from collections import defaultdict
from pathlib import Path

from ..manifest import ManifestError
from ._probe import probe

AUDIO_EXTS = (".wav", ".flac", ".ogg", ".mp3")


def fold(s: str) -> str:
    """ASCII folding for matching names: 'trñ00' -> 'trn00'."""
    return "".join(c for c in unicodedata.normalize("NFKD", s) if not unicodedata.combining(c))


def read_rttm(path: Path) -> dict[str, list[tuple[float, float, str]]]:
    """uri -> [(start, end, speaker)] from SPEAKER lines."""
    turns: dict[str, list[tuple[float, float, str]]] = defaultdict(list)
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        f = line.split()
        if not f or f[0] != "SPEAKER":
            continue
        if len(f) < 8:
            raise ManifestError(f"{path}:{n}: expected 10 RTTM fields, got {len(f)}")
        start, dur = float(f[3]), float(f[4])
        turns[f[1]].append((start, start + dur, f[7]))
    return dict(turns)


def read_uem(path: Path) -> dict[str, list[tuple[float, float]]]:
    regions: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for line in path.read_text(encoding="utf-8").splitlines():
        f = line.split()
        if len(f) >= 4:
            regions[f[0]].append((float(f[2]), float(f[3])))
    return dict(regions)


def activity(
    turns: list[tuple[float, float, str]], a: float, b: float
) -> tuple[list[str], float, int]:
    """Speakers active in [a, b), seconds with >= 2 of them, most simultaneous speakers."""
    per_spk: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for s, e, spk in turns:
        s, e = max(s, a), min(e, b)
        if e > s:
            per_spk[spk].append((s, e))
    events = []
    for spans in per_spk.values():
        spans.sort()
        merged = [list(spans[0])]
        for s, e in spans[1:]:  # merge a speaker's own overlapping turns: count people, not turns
            if s <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], e)
            else:
                merged.append([s, e])
        events += [(s, 1) for s, _ in merged] + [(e, -1) for _, e in merged]
    events.sort(key=lambda x: (x[0], x[1]))  # ends before starts at equal times
    active, most, overlap, last = 0, 0, 0.0, a
    for t, d in events:
        if active >= 2:
            overlap += t - last
        active += d
        most = max(most, active)
        last = t
    return sorted(per_spk), round(overlap, 6), most


def _match_audio(audio_dir: Path, uris: list[str]) -> dict[str, Path]:
    if not audio_dir.is_dir():
        raise ManifestError(f"{audio_dir}: no audio folder for RTTM uris {uris[:5]}")
    files = [p for p in sorted(audio_dir.iterdir()) if p.suffix.lower() in AUDIO_EXTS]
    by_stem = {p.stem: p for p in files}
    by_fold = {fold(p.stem): p for p in files}
    out = {}
    for uri in uris:
        p = by_stem.get(uri) or by_fold.get(fold(uri))
        if p is not None:
            out[uri] = p
    return out


def build_rttm(
    rttm: str | Path,
    audio_dir: str | Path | None = None,
    uem: str | Path | None = None,
    mode: str = "windows",
    window: float = 5.0,
    hop: float | None = None,
    split: str = "train",
    dataset: str = "ami",
    license: str = "CC-BY-4.0",
) -> list[dict]:
    """Records from an RTTM file and the audio files named by its uris (in `audio_dir`,
    default the RTTM's folder). A `.uem` beside the RTTM is used when `uem` is not given."""
    rttm = Path(rttm)
    if not rttm.is_file():
        raise ManifestError(f"{rttm}: no such RTTM file")
    if mode not in ("windows", "turns"):
        raise ManifestError(f"mode: expected 'windows' or 'turns', got {mode!r}")
    audio_dir = Path(audio_dir) if audio_dir else rttm.parent
    if uem is None and rttm.with_suffix(".uem").is_file():
        uem = rttm.with_suffix(".uem")
    turns = read_rttm(rttm)
    regions = read_uem(Path(uem)) if uem else {}
    files = _match_audio(audio_dir, list(turns))
    missing = sorted(set(turns) - set(files))
    if missing:
        raise ManifestError(f"{rttm}: no audio in {audio_dir} for uris {missing[:5]}")
    hop = hop or window
    records = []
    for uri, path in sorted(files.items(), key=lambda kv: kv[1].name):
        dur, sr, ch, _ = probe(path)
        rid = path.stem
        base = {
            "audio": str(path.resolve()),
            "sample_rate": sr,
            "channels": ch,
            "split": split,
            "dataset": dataset,
            "license": license,
            "recording_id": rid,
            "recording_duration": round(dur, 6),
        }
        if uri != rid:
            base["extra"] = {"rttm_uri": uri}
        if mode == "turns":
            spans = [(s, e, f"{i:04d}", k) for i, (s, e, k) in enumerate(sorted(turns[uri]))]
        else:
            spans = []
            for a, b in regions.get(uri) or regions.get(fold(uri)) or [(0.0, dur)]:
                t = a
                while t + 1e-9 < b:
                    spans.append((t, min(t + window, b), f"{t:08.2f}", None))
                    t += hop
        for s, e, tag, turn_spk in spans:
            spk, overlap, most = activity(turns[uri], s, e)
            rec = {
                **base,
                "id": f"{rid}_{tag}",
                "start": round(s, 6),
                "end": round(e, 6),
                "duration": round(e - s, 6),
                "num_samples": int(round(e * sr)) - int(round(s * sr)),
                "speakers": spk,
                "overlap": overlap,
                "labels": {"speaker_count": str(min(most, 3))},
            }
            if turn_spk or len(spk) == 1:
                rec["speaker"] = turn_spk or spk[0]
            records.append(rec)
    return records
