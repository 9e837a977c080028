"""Transcript output formats (json, txt, srt, vtt) and atomic file writing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FORMATS = ("json", "txt", "srt", "vtt")


def timestamp(seconds: float, decimal: str = ".", always_hours: bool = True) -> str:
    """12.345 -> '00:00:12.345' (vtt) or '00:00:12,345' (srt)."""
    ms = max(0, round(seconds * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    hours = f"{h:02d}:" if always_hours or h else ""
    return f"{hours}{m:02d}:{s:02d}{decimal}{ms:03d}"


def _cues(result: dict[str, Any]):
    for seg in result.get("segments", []):
        text = seg["text"].strip()
        if text:
            yield seg["start"], seg["end"], text.replace("-->", "->")


def render(result: dict[str, Any], fmt: str) -> str:
    """A transcription result as text in `fmt`."""
    if fmt == "json":
        return json.dumps(result, ensure_ascii=False, indent=2) + "\n"
    if fmt == "txt":
        return "".join(f"{text}\n" for _, _, text in _cues(result)) or (
            result.get("text", "").strip() + "\n" if result.get("text", "").strip() else ""
        )
    if fmt == "srt":
        return "\n".join(
            f"{i}\n{timestamp(a, ',')} --> {timestamp(b, ',')}\n{t}\n"
            for i, (a, b, t) in enumerate(_cues(result), start=1)
        )
    if fmt == "vtt":
        return "WEBVTT\n\n" + "\n".join(
            f"{timestamp(a)} --> {timestamp(b)}\n{t}\n" for a, b, t in _cues(result)
        )
    raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")


def write_atomic(path: str | Path, text: str) -> Path:
    """Write `text` to `path` via a temporary file in the same folder, then rename. The file
    gets the user's umask (a plain open() makes the temporary file)."""
    from .atomic import atomic_output  # pid-named temp, stale ones of dead runs removed

    path = Path(path)
    with atomic_output(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path
