"""Speech/non-speech detection error against an RTTM reference (DER-style missed speech and
false alarm, with a forgiveness collar around every reference boundary). References are read
by `rttm.read_rttm` / `rttm.read_uem`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

RESOLUTION_S = 0.001  # scoring grid: 1 ms


def _mask(segments, n: int) -> np.ndarray:
    """Samples of the 1 ms grid inside any (start, end, ...) segment."""
    m = np.zeros(n, dtype=bool)
    for a, b, *_ in segments:
        m[max(0, int(round(a / RESOLUTION_S))) : max(0, int(round(b / RESOLUTION_S)))] = True
    return m


@dataclass
class DetectionError:
    """Seconds scored, reference speech, missed speech and false alarm (after the collar)."""

    scored_s: float = 0.0
    speech_s: float = 0.0
    missed_s: float = 0.0
    false_alarm_s: float = 0.0

    def __add__(self, other: DetectionError) -> DetectionError:
        return DetectionError(
            self.scored_s + other.scored_s,
            self.speech_s + other.speech_s,
            self.missed_s + other.missed_s,
            self.false_alarm_s + other.false_alarm_s,
        )

    @property
    def missed(self) -> float:
        """Missed speech / reference speech."""
        return self.missed_s / self.speech_s if self.speech_s else 0.0

    @property
    def false_alarm(self) -> float:
        """False alarm / reference speech (DER convention)."""
        return self.false_alarm_s / self.speech_s if self.speech_s else 0.0

    @property
    def error(self) -> float:
        return self.missed + self.false_alarm


def detection_error(
    reference: Sequence[tuple],
    hypothesis: Sequence[tuple],
    uem: tuple[float, float] | Sequence[tuple[float, float]],
    collar: float = 0.25,
) -> DetectionError:
    """Missed speech and false alarm of `hypothesis` speech segments within `uem` (one
    (start, end) region or a list of them, as `rttm.read_uem` gives).

    Reference speech is the union of all turns ((start, end, ...), any speaker); `collar`
    seconds either side of each boundary of that union are not scored (NIST md-eval
    convention: 0.25 means +-0.25 s).
    """
    regions = [tuple(uem)] if np.isscalar(uem[0]) else [tuple(r) for r in uem]
    n = int(round(max(b for _, b in regions) / RESOLUTION_S))
    ref = _mask(reference, n)
    hyp = _mask(hypothesis, n)
    scored = _mask(regions, n)
    edges = np.flatnonzero(np.diff(np.concatenate([[False], ref, [False]]).astype(np.int8)))
    c = int(round(collar / RESOLUTION_S))
    for e in edges:  # boundary positions of the union of reference speech
        scored[max(0, e - c) : e + c] = False
    r = RESOLUTION_S
    return DetectionError(
        scored.sum() * r,
        (ref & scored).sum() * r,
        (ref & ~hyp & scored).sum() * r,
        (~ref & hyp & scored).sum() * r,
    )
