"""The AMI meeting clips' reference (RTTM + UEM) as frame-level speaker counts."""

from __future__ import annotations

import unicodedata
from collections import defaultdict
from pathlib import Path

import numpy as np


def canonical_uri(uri: str) -> str:
    """'trñ00' -> 'trn00': the RTTM spelled one uri with an accent; file names have none."""
    return "".join(c for c in unicodedata.normalize("NFKD", uri) if not unicodedata.combining(c))


def read_rttm(path: str | Path) -> dict[str, list[tuple[float, float, str]]]:
    """uri -> [(start, end, speaker)] from SPEAKER lines."""
    out: dict[str, list] = defaultdict(list)
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        p = line.split()
        if len(p) >= 8 and p[0] == "SPEAKER":
            t0, dur = float(p[3]), float(p[4])
            out[canonical_uri(p[1])].append((t0, t0 + dur, p[7]))
    return dict(out)


def read_uem(path: str | Path) -> dict[str, list[tuple[float, float]]]:
    out: dict[str, list] = defaultdict(list)
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        p = line.split()
        if len(p) >= 4:
            out[canonical_uri(p[0])].append((float(p[2]), float(p[3])))
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


def silences(data: Path, min_s: float = 0.5) -> list[tuple[str, np.ndarray]]:
    """Stretches of the AMI clips no RTTM speaker covers (>= min_s), as noise for held-out
    mixtures only (never for training: these clips are the evaluation set)."""
    from ...audio import load_audio

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
