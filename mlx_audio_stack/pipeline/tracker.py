"""Online speaker tracking: stable ids S1, S2 ... from speaker embeddings.

Each speaker has a centroid: the mean of its last `memory` piece embeddings (a fixed-size
ring, so memory stays flat over hours). A piece joins the most similar speaker when the cosine
similarity reaches the threshold. Below it, a piece opens a new speaker only if it scores at
least `open_margin` below the threshold, is at least `min_new_speaker_s` long and fewer than
`max_speakers` exist; otherwise it joins its most similar speaker without moving that
speaker's centroid (one wrong piece in a centroid draws the next ones after it). Pieces
shorter than `min_new_speaker_s` never move a centroid either: a 0.6-0.9 s piece of noisy
speech made a centroid that the same speaker's next pieces missed. For the same reason the
first speaker, opened by whatever piece comes first, has no voice until a long piece gives it
one (a voiceless speaker takes the first long piece that matches no one). The sources of one
separated window are assigned jointly (all assignments tried) and never share an id.

Two kinds of audio are embedded: pieces of the mixture as heard (noise and all) and the
sources a separator returns (clean or with separation artefacts). One speaker's embeddings of
the two kinds differ: on a 10-minute meeting with true sources at 10 dB SNR, separated pieces
scored 0.71-0.73 against their speaker's mixture-piece centroid where mixture pieces scored
0.82-0.83, so a speaker first seen in a separated window got a second id for their next
mixture piece. A speaker's ring therefore tags each embedding with its kind, and a piece
scores against a speaker as the better of its similarity to that speaker's centroid of the
piece's kind and to the other kind's centroid plus `cross_margin` (that gap).

The defaults in `PipelineConfig` were chosen on a tuning set apart from the evaluation
meetings (reports/pipeline.md says which).
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
    kinds: tuple[np.ndarray, ...] = ()  # (memory,) each: 0 mixture piece, 1 separated source
    counts: tuple[int, ...] = ()  # pieces seen per speaker
    last: str | None = None  # the speaker of the last assigned piece
    next_id: int = 1

    def centroids(self, kind: int) -> tuple[np.ndarray, np.ndarray]:
        """(K, D) unit centroids of each speaker's embeddings of `kind`, and (K,) flags: False
        where a speaker has none of that kind (its row is then zero)."""
        rows, have = [], []
        for ring, kinds, n in zip(self.rings, self.kinds, self.counts):
            n = min(n, ring.shape[0])
            same = kinds[:n] == kind
            c = ring[:n][same].sum(axis=0) if same.any() else np.zeros(ring.shape[1], np.float32)
            rows.append(c / (np.linalg.norm(c) + 1e-9))
            have.append(bool(same.any()))
        if not rows:
            return np.zeros((0, 0), np.float32), np.zeros(0, bool)
        return np.stack(rows), np.array(have)


class SpeakerTracker:
    """`state, ids = tracker.assign(state, embeddings, durations)`: one id per embedding."""

    def __init__(
        self,
        threshold: float,
        max_speakers: int = 3,
        memory: int = 30,
        min_new_speaker_s: float = 1.0,
        cross_margin: float = 0.1,
        open_margin: float = 0.0,
    ):
        self.threshold = threshold
        self.max_speakers = max_speakers
        self.memory = memory
        self.min_new_speaker_s = min_new_speaker_s
        self.cross_margin = cross_margin
        self.open_below = threshold - open_margin  # a new speaker only below this

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
        """Assign each row of `embeddings` (N, D) to a speaker. `distinct`: rows are the sources
        of one separated window (they must get different ids, and are compared with separated
        sources first); else mixture pieces. Returns (state, ids, is_new flags)."""
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

    def _sims(self, state: TrackerState, e: np.ndarray, kind: int) -> np.ndarray:
        """Similarity (K, N) of each row of e (N, D), an embedding of `kind`, to each speaker:
        the better of its centroid of that kind and its other kind's plus `cross_margin`."""
        same, have_same = state.centroids(kind)
        other, have_other = state.centroids(1 - kind)
        s_same = np.where(have_same[:, None], same @ e.T, -np.inf)
        s_other = np.where(have_other[:, None], other @ e.T + self.cross_margin, -np.inf)
        return np.maximum(s_same, s_other)

    def _assign_one(self, state: TrackerState, e: np.ndarray, dur: float):
        k = len(state.ids)
        long_enough = dur >= self.min_new_speaker_s
        if k:
            sims = self._sims(state, e[None], 0)[:, 0]
            best = int(np.argmax(sims))
            if sims[best] >= self.threshold:
                if not long_enough:  # a short piece joins without moving the centroid
                    return self._join(state, best), state.ids[best], False
                return self._add(state, best, e, 0), state.ids[best], False
            if long_enough and 0 in state.counts:  # a speaker without a voice yet gets this one
                i = state.counts.index(0)
                return self._add(state, i, e, 0), state.ids[i], False
            if sims[best] >= self.open_below or not self._may_open(state, dur):
                # joins, but does not pull the centroid
                if not np.isfinite(sims[best]):  # no speaker has a voice: the last one
                    best = state.ids.index(state.last) if state.last in state.ids else 0
                return self._join(state, best), state.ids[best], False
        if self._may_open(state, dur) or k == 0:
            # the first piece opens S1 even when short, but only a long piece gives it a voice
            return self._open(state, e, 0, voiced=long_enough)
        return state, state.ids[-1], False

    def _assign_joint(self, state: TrackerState, e: np.ndarray, durations: list[float]):
        """Best joint assignment of N rows to existing or new speakers, ids all different."""
        k, n = len(state.ids), e.shape[0]
        sims = self._sims(state, e, 1) if k else np.zeros((0, n))  # (K, N)
        free = self.max_speakers - k  # new speakers that may still be opened
        # candidate targets per row: existing speakers, or "new" (index -1 .. -free)
        targets = list(range(k)) + [-(j + 1) for j in range(max(free, 0))]
        voiceless = [c == 0 for c in state.counts]  # joining one scores as opening, a bit more
        best, best_score = None, -np.inf
        for combo in permutations(targets, min(n, len(targets))):
            score = 0.0
            for r, t in enumerate(combo):
                if t >= 0:
                    score += self.open_below + 1e-6 if voiceless[t] else sims[t, r]
                elif durations[r] >= self.min_new_speaker_s or k == 0:
                    score += self.open_below  # opening a speaker scores as its threshold
                else:
                    score -= 1.0
            if score > best_score:
                best, best_score = combo, score
        ids, news = [], []
        for r, t in enumerate(best or ()):
            long_enough = durations[r] >= self.min_new_speaker_s
            if t >= 0:
                state = self._add(state, t, e[r], 1) if long_enough else self._join(state, t)
                ids.append(state.ids[t])
                news.append(False)
            else:
                state, sid, _ = self._open(state, e[r], 1, voiced=long_enough)
                ids.append(sid)
                news.append(True)
        return state, ids, news

    def _may_open(self, state: TrackerState, dur: float) -> bool:
        return len(state.ids) < self.max_speakers and dur >= self.min_new_speaker_s

    def _open(self, state: TrackerState, e: np.ndarray, kind: int, voiced: bool = True):
        sid = f"S{state.next_id}"
        ring = np.zeros((self.memory, e.size), np.float32)
        kinds = np.full(self.memory, -1, np.int8)
        if voiced:
            ring[0], kinds[0] = e, kind
        state = replace(
            state,
            ids=state.ids + (sid,),
            rings=state.rings + (ring,),
            kinds=state.kinds + (kinds,),
            counts=state.counts + (int(voiced),),
            last=sid,
            next_id=state.next_id + 1,
        )
        return state, sid, True

    @staticmethod
    def _join(state: TrackerState, i: int) -> TrackerState:
        """Speaker i takes the piece without it moving their centroid."""
        return replace(state, last=state.ids[i])

    def _add(self, state: TrackerState, i: int, e: np.ndarray, kind: int) -> TrackerState:
        ring, kinds = state.rings[i].copy(), state.kinds[i].copy()
        slot = state.counts[i] % self.memory
        ring[slot], kinds[slot] = e, kind
        rings = state.rings[:i] + (ring,) + state.rings[i + 1 :]
        kinds_all = state.kinds[:i] + (kinds,) + state.kinds[i + 1 :]
        counts = state.counts[:i] + (state.counts[i] + 1,) + state.counts[i + 1 :]
        return replace(state, rings=rings, kinds=kinds_all, counts=counts, last=state.ids[i])
