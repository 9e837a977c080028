"""Writing separated sources: spk1.wav, spk2.wav ... written as one atomic group: each to a
temp name, then all renamed together (`atomic.commit_group`), so the folder holds the old set
or the complete new one (a kill during the renames is finished by the next run), and an old
run's extra sources (spk3.wav of a 3-speaker model) go with the old set."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ...atomic import commit_group, stream_temp_name


def _commit(tmps: list[Path], finals: list[Path]) -> None:
    """Rename the complete temps onto the finals as one group, removing older spk<k>.wav."""
    names = {p.name for p in finals}
    folder = finals[0].parent
    extra = [
        p
        for p in folder.glob("spk*.wav")
        if re.fullmatch(r"spk\d+\.wav", p.name) and p.name not in names
    ]
    commit_group(list(zip(tmps, finals)), remove=sorted(extra))


def write_sources(sources: np.ndarray, out_dir: str | Path, sr: int) -> list[Path]:
    """Write (S, T) float32 sources as `out_dir/spk{i}.wav` (float WAV); returns the paths.

    Each file goes to a temporary name in the same folder first; the complete set is renamed
    into place as one group, so a reader never sees a half-written file or a mixed set.
    """
    import soundfile as sf

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sources = np.asarray(sources, dtype=np.float32)
    finals = [out / f"spk{i}.wav" for i in range(1, len(sources) + 1)]
    tmps = [stream_temp_name(p) for p in finals]  # stale temps of killed runs removed first
    try:
        for src, tmp in zip(sources, tmps):
            sf.write(str(tmp), src, sr, subtype="FLOAT", format="WAV")
        _commit(tmps, finals)
    finally:
        for tmp in tmps:
            if tmp.exists():
                tmp.unlink()
    return finals


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
        _commit(tmps, finals)
    finally:
        for f in files:
            f.close()
        for t in tmps:
            if t.exists():
                t.unlink()
    return finals
