"""Shared helpers for adapters: audio header probing and record construction."""

from __future__ import annotations

from pathlib import Path

import soundfile as sf

from ...audio import check_regular_file
from ...errors import AudioError
from ..manifest import ManifestError


def probe(path: Path) -> tuple[float, int, int, int]:
    """(duration s, sample rate, channels, frames) from the file header (no decoding)."""
    try:
        check_regular_file(path)  # a FIFO in a dataset folder would block sf.info
    except AudioError as exc:
        raise ManifestError(str(exc)) from None
    try:
        info = sf.info(str(path))
    except Exception as exc:
        raise ManifestError(f"{path}: cannot read the audio header ({exc})") from exc
    return info.frames / info.samplerate, info.samplerate, info.channels, info.frames


def file_record(path: Path, rid: str, dataset: str, license: str, split: str, **fields) -> dict:
    """A whole-file record with duration/rate/channels/samples from the header."""
    dur, sr, ch, frames = probe(path)
    rec = {
        "id": rid,
        "audio": str(path.resolve()),
        "start": 0.0,
        "duration": round(dur, 6),
        "sample_rate": sr,
        "channels": ch,
        "num_samples": frames,
        "split": split,
        "dataset": dataset,
        "license": license,
    }
    rec.update({k: v for k, v in fields.items() if v is not None})
    return rec
