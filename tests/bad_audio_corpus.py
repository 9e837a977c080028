"""The bad-audio corpus of issue 16 (items 8 and 9), built on demand into a folder:

    python tests/bad_audio_corpus.py OUT_DIR

Every file is made from the bundled demo clip or generated; `build()` returns
{name: path}. The sparse 1 GB file takes 4 KB on disk.
"""

from __future__ import annotations

import os
import struct
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16000
HEADER_BYTES = 2_000_000_000  # data bytes the small file's header declares
HUGE_BYTES = 1_000_000_000  # data bytes of the real (sparse) large file
HUGE_CHANNELS, HUGE_RATE = 16, 384000  # that file: 81 s once mixed down


def wav_header(channels: int, rate: int, data_bytes: int) -> bytes:
    """A 44-byte PCM_16 WAV header declaring `data_bytes` of samples."""
    align = 2 * channels
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * align, align, 16)
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data_bytes)
        + b"WAVE"
        + b"fmt "
        + struct.pack("<I", 16)
        + fmt
        + b"data"
        + struct.pack("<I", data_bytes)
    )


def build(out: str | Path, speech: str | Path | None = None) -> dict[str, Path]:
    """Write the corpus into `out`; returns {name: path}."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if speech is None:
        from mlx_audio_stack.paths import DEMO_CLIP

        speech = DEMO_CLIP
    x, sr = sf.read(str(speech), dtype="float32")
    files = {}

    def put(name: str) -> Path:
        files[name] = out / name
        return files[name]

    sf.write(put("speech.wav"), x, sr, subtype="PCM_16")
    data = files["speech.wav"].read_bytes()
    put("truncated.wav").write_bytes(data[: len(data) // 2])  # cut mid-data
    # other containers cut mid-data: libsndfile reads AIFF and Ogg as shorter files, and keeps
    # FLAC's STREAMINFO frame count but fails (or stops) when decoding reaches the cut
    for name, fmt in (("truncated.aiff", "AIFF"), ("truncated.flac", "FLAC")):
        sf.write(put(name), x, sr, format=fmt, subtype="PCM_16")
    sf.write(put("truncated.ogg"), x, sr, format="OGG", subtype="VORBIS")
    for name in ("truncated.aiff", "truncated.flac", "truncated.ogg"):
        whole = files[name].read_bytes()
        files[name].write_bytes(whole[: len(whole) // 2])
    sf.write(put("wrong_ext.mp3"), x[: 4 * sr], sr, "PCM_16", format="WAV")  # WAV named .mp3
    sf.write(put("empty.wav"), np.zeros(0, np.float32), SR, subtype="PCM_16")
    # a 16 KB file whose header declares 2 GB (libsndfile shrinks it to what is there)
    put("huge_header.wav").write_bytes(wav_header(1, SR, HEADER_BYTES) + bytes(16384))
    # a real (sparse) 1 GB file: read whole it needs 2 GB as float32
    with open(put("huge_1gb.wav"), "wb") as f:
        f.write(wav_header(HUGE_CHANNELS, HUGE_RATE, HUGE_BYTES))
        f.truncate(44 + HUGE_BYTES)
    sf.write(put("scaled_1e30.wav"), x * np.float32(1e30), sr, subtype="FLOAT")
    nan = x.copy()
    nan[1000:1010] = np.nan
    sf.write(put("nan.wav"), nan, sr, subtype="FLOAT")
    sf.write(put("silence_10min.wav"), np.zeros(600 * SR, np.int16), SR, subtype="PCM_16")
    sf.write(put("silence_3s.wav"), np.zeros(3 * SR, np.int16), SR, subtype="PCM_16")
    put("not_audio.wav").write_text("these are notes, not audio\n")
    put("folder.wav").mkdir(exist_ok=True)
    if not files.setdefault("fifo.wav", out / "fifo.wav").exists():
        os.mkfifo(files["fifo.wav"])
    unreadable = put("unreadable.wav")
    unreadable.write_bytes(data)
    unreadable.chmod(0)
    return files


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tests/bad_audio_corpus.py OUT_DIR")
    for name, path in build(sys.argv[1]).items():
        print(f"{name}\t{path}")
