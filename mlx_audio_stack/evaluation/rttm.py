"""RTTM / UEM references (speaker turns, scored regions), read one way for every evaluation,
and the AMI meeting clips' reference as frame-level speaker counts."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from ..data.adapters.rttm import fold
from ..data.adapters.rttm import read_rttm as _read_rttm
from ..data.adapters.rttm import read_uem as _read_uem


def read_rttm(path: str | Path) -> dict[str, list[tuple[float, float, str]]]:
    """uri (folded: 'trñ00' -> 'trn00', as file stems are spelled) -> [(start, end, speaker)]
    seconds of every SPEAKER line (the data adapter's parser: a short line is an error)."""
    out: dict[str, list] = defaultdict(list)
    for uri, turns in _read_rttm(Path(path)).items():
        out[fold(uri)].extend(turns)
    return dict(out)


def read_uem(path: str | Path) -> dict[str, list[tuple[float, float]]]:
    """uri (folded) -> [(start, end)] seconds of its scored regions."""
    out: dict[str, list] = defaultdict(list)
    for uri, regions in _read_uem(Path(path)).items():
        out[fold(uri)].extend(regions)
    return dict(out)


def frame_counts(
    segs: list[tuple[float, float, str]], n_frames: int, frame_s: float = 0.1
) -> np.ndarray:
    """Speakers active per frame: a speaker counts in a frame it covers for >= half of it
    (the same rule as the training labels), computed on a 10 ms grid."""
    fine = np.zeros((n_frames * 10, len({s for *_, s in segs}) or 1), dtype=bool)
    spk = {s: i for i, s in enumerate(sorted({s for *_, s in segs}))}
    step = frame_s / 10
    for a, b, s in segs:
        fine[int(round(a / step)) : int(round(b / step)), spk[s]] = True
    per = fine.reshape(n_frames, 10, -1).mean(1) >= 0.5  # (F, S)
    return per.sum(1).astype(np.int32)


def uem_mask(regions: list[tuple[float, float]], n_frames: int, frame_s: float = 0.1) -> np.ndarray:
    """Frames whose centre lies inside a scored region."""
    centres = (np.arange(n_frames) + 0.5) * frame_s
    m = np.zeros(n_frames, dtype=bool)
    for a, b in regions:
        m |= (centres >= a) & (centres < b)
    return m


def ami_silences(data: Path, min_s: float = 0.5) -> list[tuple[str, np.ndarray]]:
    """Stretches of the AMI clips no RTTM speaker covers (>= min_s), as noise for held-out
    mixtures only (never for training: these clips are the evaluation set)."""
    from ..audio import load_audio

    folder = data / "ami_meeting_clips"
    rttm = read_rttm(folder / "debug.train.rttm")
    out = []
    for wav in sorted(folder.glob("trn*.wav")):
        x = load_audio(wav)
        n = x.size // 1600
        counts = frame_counts(rttm.get(wav.stem, []), n)
        silent = np.concatenate([[0], (counts == 0).astype(np.int8), [0]])
        d = np.diff(silent)
        for a, b in zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1)):
            if (b - a) * 0.1 >= min_s:
                out.append((f"{wav.stem}:{a / 10:.1f}-{b / 10:.1f}", x[a * 1600 : b * 1600]))
    return out
