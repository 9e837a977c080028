"""Speech/non-speech detection error against an RTTM reference (DER-style missed speech and
false alarm, with a forgiveness collar around every reference boundary)."""

from __future__ import annotations

import unicodedata
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

RESOLUTION_S = 0.001  # scoring grid: 1 ms


def normalize_uri(uri: str) -> str:
    """'trñ00' -> 'trn00': RTTM uris are matched to file stems without accents."""
    decomposed = unicodedata.normalize("NFKD", uri)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def read_rttm(path: str | Path) -> dict[str, list[tuple[float, float]]]:
    """uri (normalized) -> [(start, end)] seconds of every SPEAKER turn, any speaker."""
    turns: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        f = line.split()
        if len(f) >= 5 and f[0] == "SPEAKER":
            start, dur = float(f[3]), float(f[4])
            turns[normalize_uri(f[1])].append((start, start + dur))
    return dict(turns)


def read_uem(path: str | Path) -> dict[str, tuple[float, float]]:
    """uri (normalized) -> (start, end) of the scored region."""
    out = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        f = line.split()
        if len(f) >= 4:
            out[normalize_uri(f[0])] = (float(f[2]), float(f[3]))
    return out


def _mask(segments, n: int) -> np.ndarray:
    m = np.zeros(n, dtype=bool)
    for a, b in segments:
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
    reference: list[tuple[float, float]],
    hypothesis: list[tuple[float, float]],
    uem: tuple[float, float],
    collar: float = 0.25,
) -> DetectionError:
    """Missed speech and false alarm of `hypothesis` speech segments within `uem`.

    Reference speech is the union of all turns; `collar` seconds either side of each boundary
    of that union are not scored (NIST md-eval convention: 0.25 means +-0.25 s).
    """
    n = int(round(uem[1] / RESOLUTION_S))
    ref = _mask(reference, n)
    hyp = _mask(hypothesis, n)
    scored = np.zeros(n, dtype=bool)
    scored[int(round(uem[0] / RESOLUTION_S)) :] = True
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
