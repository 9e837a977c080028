"""The overlap detector stage: the trained speaker counter shipped in the package
(`models/speaker_count`, reports/speaker_count.md) behind the pipeline's stage interface."""

from __future__ import annotations

import numpy as np


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
