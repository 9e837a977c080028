"""Online speaker tracking: stable ids S1, S2 ... from speaker embeddings.

Each speaker has a centroid: the mean of its last `centroid_memory` piece embeddings (a fixed-
size ring, so memory stays flat over hours). A piece joins the most similar speaker when the
cosine similarity reaches the threshold; otherwise it opens a new speaker, if it is long
enough (`min_new_speaker_s`, diart's rho_update in spirit) and fewer than `max_speakers`
exist; otherwise it joins the most similar speaker anyway, without moving that speaker's
centroid (one wrong piece in a centroid draws the next ones after it). The sources of one
separated window are assigned jointly (all assignments tried) and never share an id.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import permutations

import numpy as np


@dataclass(frozen=True)
class TrackerState:
    """The tracker's value: speaker ids, their embedding rings and fill counts."""

    ids: tuple[str, ...] = ()
    rings: tuple[np.ndarray, ...] = ()  # (memory, D) each
    counts: tuple[int, ...] = ()  # pieces seen per speaker
    last: str | None = None  # the speaker of the last assigned piece
    next_id: int = 1

    def centroids(self) -> np.ndarray:
        rows = []
        for ring, n in zip(self.rings, self.counts):
            c = ring[: min(n, ring.shape[0])].mean(axis=0)
            rows.append(c / (np.linalg.norm(c) + 1e-9))
        return np.stack(rows) if rows else np.zeros((0, 0), np.float32)


class SpeakerTracker:
    """`state, ids = tracker.assign(state, embeddings, durations)`: one id per embedding."""

    def __init__(
        self,
        threshold: float,
        max_speakers: int = 3,
        memory: int = 30,
        min_new_speaker_s: float = 1.0,
    ):
        self.threshold = threshold
        self.max_speakers = max_speakers
        self.memory = memory
        self.min_new_speaker_s = min_new_speaker_s

    @staticmethod
    def initial_state() -> TrackerState:
        return TrackerState()

    def assign(
        self,
        state: TrackerState,
        embeddings: np.ndarray,
        durations: list[float],
        distinct: bool = False,
    ) -> tuple[TrackerState, list[str], list[bool]]:
        """Assign each row of `embeddings` (N, D) to a speaker. `distinct`: rows come from one
        separated window and must get different ids. Returns (state, ids, is_new flags)."""
        e = np.asarray(embeddings, np.float32)
        e = e / (np.linalg.norm(e, axis=1, keepdims=True) + 1e-9)
        if not distinct:
            ids, news = [], []
            for row, d in zip(e, durations):
                state, sid, new = self._assign_one(state, row, d)
                ids.append(sid)
                news.append(new)
            return state, ids, news
        return self._assign_joint(state, e, durations)

    def _assign_one(self, state: TrackerState, e: np.ndarray, dur: float):
        k = len(state.ids)
        if k:
            sims = state.centroids() @ e
            best = int(np.argmax(sims))
            if sims[best] >= self.threshold:
                return self._add(state, best, e), state.ids[best], False
            if not self._may_open(state, dur):  # joins, but does not pull the centroid
                return replace(state, last=state.ids[best]), state.ids[best], False
        if self._may_open(state, dur) or k == 0:
            return self._open(state, e)
        return state, state.ids[-1], False

    def _assign_joint(self, state: TrackerState, e: np.ndarray, durations: list[float]):
        """Best joint assignment of N rows to existing or new speakers, ids all different."""
        k, n = len(state.ids), e.shape[0]
        sims = state.centroids() @ e.T if k else np.zeros((0, n))  # (K, N)
        free = self.max_speakers - k  # new speakers that may still be opened
        # candidate targets per row: existing speakers, or "new" (index -1 .. -free)
        targets = list(range(k)) + [-(j + 1) for j in range(max(free, 0))]
        best, best_score = None, -np.inf
        for combo in permutations(targets, min(n, len(targets))):
            score = 0.0
            for r, t in enumerate(combo):
                if t >= 0:
                    score += sims[t, r]
                elif durations[r] >= self.min_new_speaker_s or k == 0:
                    score += self.threshold  # opening a speaker scores as the threshold
                else:
                    score -= 1.0
            if score > best_score:
                best, best_score = combo, score
        ids, news = [], []
        for r, t in enumerate(best or ()):
            if t >= 0:
                state = self._add(state, t, e[r])
                ids.append(state.ids[t])
                news.append(False)
            else:
                state, sid, _ = self._open(state, e[r])
                ids.append(sid)
                news.append(True)
        return state, ids, news

    def _may_open(self, state: TrackerState, dur: float) -> bool:
        return len(state.ids) < self.max_speakers and dur >= self.min_new_speaker_s

    def _open(self, state: TrackerState, e: np.ndarray):
        sid = f"S{state.next_id}"
        ring = np.zeros((self.memory, e.size), np.float32)
        ring[0] = e
        state = replace(
            state,
            ids=state.ids + (sid,),
            rings=state.rings + (ring,),
            counts=state.counts + (1,),
            last=sid,
            next_id=state.next_id + 1,
        )
        return state, sid, True

    def _add(self, state: TrackerState, i: int, e: np.ndarray) -> TrackerState:
        ring = state.rings[i].copy()
        ring[state.counts[i] % self.memory] = e
        rings = state.rings[:i] + (ring,) + state.rings[i + 1 :]
        counts = state.counts[:i] + (state.counts[i] + 1,) + state.counts[i + 1 :]
        return replace(state, rings=rings, counts=counts, last=state.ids[i])
