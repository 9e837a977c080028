"""Writing separated sources: spk1.wav, spk2.wav ... each written atomically."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ...atomic import stream_temp_name


def write_sources(sources: np.ndarray, out_dir: str | Path, sr: int) -> list[Path]:
    """Write (S, T) float32 sources as `out_dir/spk{i}.wav` (float WAV); returns the paths.

    Each file goes to a temporary name in the same folder first and is renamed into place,
    so a reader never sees a half-written file.
    """
    import soundfile as sf

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, src in enumerate(np.asarray(sources, dtype=np.float32), start=1):
        final = out / f"spk{i}.wav"
        tmp = stream_temp_name(final)  # stale temps of killed runs are removed first
        try:
            sf.write(str(tmp), src, sr, subtype="FLOAT", format="WAV")
            os.replace(tmp, final)
        finally:
            if tmp.exists():
                tmp.unlink()
        paths.append(final)
    return paths


def separate_file_streaming(
    path: str | Path,
    model,
    out_dir: str | Path,
    window_s: float = 8.0,
    overlap_s: float = 1.0,
    progress: bool = False,
) -> list[Path]:
    """Separate an audio file of any length with bounded memory: blocks are read, pushed
    through a StreamingSeparator and appended to `out_dir/spk{i}.wav` (renamed into place at
    the end). Returns the paths."""
    import soundfile as sf

    from ...audio import stream_audio
    from .stream import StreamingSeparator

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sr = model.sample_rate
    st = StreamingSeparator(model, window_s, overlap_s)
    finals = [out / f"spk{i + 1}.wav" for i in range(model.num_spks)]
    tmps = [stream_temp_name(p) for p in finals]  # stale temps of killed runs removed first
    files = [sf.SoundFile(str(t), "w", sr, 1, subtype="FLOAT", format="WAV") for t in tmps]
    try:
        blocks = stream_audio(path, block_s=st.hop / sr, sr=sr)
        if progress:
            from tqdm import tqdm

            blocks = tqdm(blocks, unit="block", desc="separating")
        for block in blocks:
            for f, y in zip(files, st.push(block)):
                f.write(y)
        for f, y in zip(files, st.flush()):
            f.write(y)
        for f in files:
            f.close()
        for t, p in zip(tmps, finals):
            os.replace(t, p)
    finally:
        for f in files:
            f.close()
        for t in tmps:
            if t.exists():
                t.unlink()
    return finals
