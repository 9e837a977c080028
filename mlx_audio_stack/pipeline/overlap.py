"""The overlap detector stage: the trained speaker counter shipped in the package
(`models/speaker_count`, reports/speaker_count.md) behind the pipeline's stage interface."""

from __future__ import annotations

import numpy as np

from .config import SAMPLE_RATE, PipelineConfig
from .stages import Piece


class CounterOverlap:
    """`state, probs = det.step(state, samples)`: P(0), P(1), P(2), P(3+) speakers for each
    0.1 s frame whose context is complete (frames come 0.415 s after they end)."""

    name = "speaker-count"

    def __init__(self, counter):
        self.counter = counter
        self.frame_s = counter.frame_seconds
        self.threshold = counter.overlap_threshold

    def initial_state(self):
        return self.counter.init_state()

    def step(self, state, samples: np.ndarray):
        return self.counter.step(state, samples)

    def finish(self, state):
        return self.counter.flush(state)


def default_overlap_detector() -> CounterOverlap | None:
    """The shipped speaker counter, or None when its weights cannot be loaded."""
    from ..errors import MasError
    from ..models.speaker_count.load import load_speaker_counter

    try:
        return CounterOverlap(load_speaker_counter())
    except MasError:
        return None


def split_by_overlap(
    piece: Piece, ov: np.ndarray, fs: float, cfg: PipelineConfig
) -> list[tuple[Piece, int]]:
    """Cut a piece at its overlapped runs: [(part, speaker count)], count >= 2 for a run of
    detector frames (`ov` (F, 4) probabilities, `fs` s each) with P(>= 2 speakers) >=
    overlap_threshold lasting >= overlap_min_s; slivers shorter than overlap_bridge_s go with
    the run beside them."""
    hop = fs * SAMPLE_RATE  # samples per detector frame
    f0 = int(piece.start // hop)
    f1 = max(f0 + 1, int(np.ceil(piece.end / hop)))
    seg = ov[f0:f1]
    multi = seg[:, 2:].sum(axis=1) >= cfg.overlap_threshold if seg.size else seg
    if not np.any(multi):
        return [(piece, 1)]
    runs = _runs(multi, int(round(cfg.overlap_bridge_s / fs)))
    runs = [(a, b) for a, b in runs if (b - a) * fs >= cfg.overlap_min_s]
    if not runs:
        return [(piece, 1)]
    parts: list[tuple[Piece, int]] = []
    pos = piece.start
    min_part = int(cfg.overlap_bridge_s * SAMPLE_RATE)
    for a, b in runs:
        s = max(piece.start, int((f0 + a) * hop))
        e = min(piece.end, int((f0 + b) * hop))
        if s - pos < min_part:  # a sliver before the run goes with it
            s = pos
        if piece.end - e < min_part:
            e = piece.end
        if e <= s:
            continue
        if s > pos:
            parts.append((Piece(pos, s, piece.onset and pos == piece.start), 1))
        count = int(seg[a:b].argmax(axis=1).max())
        parts.append((Piece(s, e, False), max(2, count)))
        pos = e
    if pos < piece.end:
        parts.append((Piece(pos, piece.end, False), 1))
    return parts


def _runs(mask: np.ndarray, bridge: int) -> list[tuple[int, int]]:
    """[start, end) index runs of True in `mask`, joining runs separated by <= bridge."""
    idx = np.flatnonzero(mask)
    if idx.size == 0:
        return []
    runs = [[int(idx[0]), int(idx[0]) + 1]]
    for i in idx[1:]:
        if i - runs[-1][1] <= bridge:
            runs[-1][1] = int(i) + 1
        else:
            runs.append([int(i), int(i) + 1])
    return [(a, b) for a, b in runs]
