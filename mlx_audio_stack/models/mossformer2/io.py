"""Writing separated sources: spk1.wav, spk2.wav ... each written atomically."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


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
        tmp = out / f".spk{i}.wav.tmp-{os.getpid()}"
        try:
            sf.write(str(tmp), src, sr, subtype="FLOAT", format="WAV")
            os.replace(tmp, final)
        finally:
            if tmp.exists():
                tmp.unlink()
        paths.append(final)
    return paths
