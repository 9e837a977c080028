"""Speech segments of whole files, and their text forms (JSON, tab-separated text, RTTM)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .model import SileroVAD


@dataclass
class FileSegments:
    """Speech segments of one file, in seconds from its start."""

    path: str
    sample_rate: int  # the file's own rate
    duration_s: float
    segments: list[tuple[float, float]] = field(default_factory=list)

    @property
    def uri(self) -> str:
        return Path(self.path).stem


def vad_file(
    path: str | Path, model: SileroVAD, model_sample_rate: int | None = None, **options
) -> FileSegments:
    """Run VAD over one audio file; `options` are `speech_timestamps`'s."""
    from ...audio import audio_info
    from .segments import speech_timestamps

    segs = speech_timestamps(path, model, model_sample_rate=model_sample_rate, **options)
    info = audio_info(path)
    sr = info.samplerate
    # samples are at the file's rate, or at the forced branch's rate
    unit = model_sample_rate or sr
    return FileSegments(
        str(path), sr, info.frames / sr, [(s["start"] / unit, s["end"] / unit) for s in segs]
    )


def to_json(results: list[FileSegments]) -> str:
    return json.dumps(
        [
            {
                "file": r.path,
                "sample_rate": r.sample_rate,
                "duration_s": round(r.duration_s, 3),
                "segments": [{"start": round(a, 3), "end": round(b, 3)} for a, b in r.segments],
            }
            for r in results
        ],
        indent=2,
    )


def to_txt(results: list[FileSegments]) -> str:
    """One line per segment: file, start, end (seconds), tab-separated."""
    return "\n".join(f"{r.path}\t{a:.3f}\t{b:.3f}" for r in results for a, b in r.segments)


def to_rttm(results: list[FileSegments], label: str = "speech") -> str:
    """NIST RTTM SPEAKER lines (file stem as uri, one 'speaker' named `label`)."""
    return "\n".join(
        f"SPEAKER {r.uri} 1 {a:.3f} {b - a:.3f} <NA> <NA> {label} <NA> <NA>"
        for r in results
        for a, b in r.segments
    )


FORMATS = {"json": to_json, "txt": to_txt, "rttm": to_rttm}
