"""The pipeline's front stages, each `state, out = stage.step(state, x)` with a value state:
VAD frames, speech pieces, overlap counts, separation of one overlapped piece.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .config import FRAME_S, SAMPLE_RATE, VAD_FRAME, PipelineConfig

# --- VAD: Silero, one probability per 32 ms frame ------------------------------------------------


@dataclass(frozen=True)
class VADStageState:
    vad: object  # silero VADState (None for the oracle)
    pending: np.ndarray  # < VAD_FRAME samples not yet framed
    frames: int = 0  # frames done


class VADStage:
    """Silero VAD over 512-sample frames of the input, whatever the chunk sizes."""

    def __init__(self, model):
        self.model = model

    def initial_state(self) -> VADStageState:
        from ..models.silero_vad.streaming import initial_state

        return VADStageState(initial_state(self.model, SAMPLE_RATE), np.zeros(0, np.float32))

    def step(self, state: VADStageState, samples: np.ndarray) -> tuple[VADStageState, np.ndarray]:
        from ..models.silero_vad.streaming import vad_step

        x = np.concatenate([state.pending, samples])
        n = x.size // VAD_FRAME
        probs = np.zeros(n, np.float32)
        vs = state.vad
        for i in range(n):
            p, vs = vad_step(self.model, x[i * VAD_FRAME : (i + 1) * VAD_FRAME], vs)
            probs[i] = p[0]
        return VADStageState(vs, x[n * VAD_FRAME :].copy(), state.frames + n), probs

    def finish(self, state: VADStageState) -> tuple[VADStageState, np.ndarray]:
        """End of input: the last partial frame, zero padded."""
        if state.pending.size == 0:
            return state, np.zeros(0, np.float32)
        pad = np.zeros(VAD_FRAME - state.pending.size, np.float32)
        return self.step(state, pad)


class OracleVAD(VADStage):
    """Evaluation only: probability 1 inside the reference speech regions, else 0."""

    def __init__(self, regions: list[tuple[float, float]]):
        self.regions = np.array(regions, np.float64).reshape(-1, 2)

    def initial_state(self) -> VADStageState:
        return VADStageState(None, np.zeros(0, np.float32))

    def step(self, state, samples):
        x = np.concatenate([state.pending, samples])
        n = x.size // VAD_FRAME
        mid = (state.frames + np.arange(n) + 0.5) * FRAME_S
        inside = (mid[:, None] >= self.regions[:, 0]) & (mid[:, None] < self.regions[:, 1])
        probs = inside.any(axis=1).astype(np.float32)
        return VADStageState(None, x[n * VAD_FRAME :].copy(), state.frames + n), probs


# --- speech pieces: runs of speech cut at pauses or at max_piece_s ---------------------------


@dataclass(frozen=True)
class Piece:
    start: int  # sample index in the meeting (padding included)
    end: int
    onset: bool  # starts at a speech onset (not at a cut inside a run)


@dataclass(frozen=True)
class SegmenterState:
    in_speech: bool = False
    start: int = 0  # frame where the open piece starts
    onset: bool = True
    last_speech: int = -1  # last frame at or above the negative threshold
    frame: int = 0  # next frame index
    last_end: int = 0  # sample where the previous piece ended (no overlap between pieces)


class Segmenter:
    """Frame probabilities -> closed speech pieces, with silero's hysteresis."""

    def __init__(self, cfg: PipelineConfig):
        self.cfg = cfg
        self.min_sil = max(1, int(round(cfg.min_silence_s / FRAME_S)))
        self.max_len = max(1, int(round(cfg.max_piece_s / FRAME_S)))
        self.pad = int(round(cfg.speech_pad_s * SAMPLE_RATE))

    @staticmethod
    def initial_state() -> SegmenterState:
        return SegmenterState()

    def step(self, state: SegmenterState, probs: np.ndarray) -> tuple[SegmenterState, list[Piece]]:
        pieces: list[Piece] = []
        s = state
        for p in probs:
            f = s.frame
            if not s.in_speech:
                if p >= self.cfg.vad_threshold:
                    s = replace(s, in_speech=True, start=f, onset=True, last_speech=f)
            else:
                if p >= self.cfg.vad_neg_threshold:
                    s = replace(s, last_speech=f)
                if f - s.last_speech >= self.min_sil:  # pause: close at the last speech frame
                    s, piece = self._close(s, s.last_speech + 1, offset=True)
                    pieces.append(piece)
                    s = replace(s, in_speech=False)
                elif f + 1 - s.start >= self.max_len:  # long run: cut here, go on
                    s, piece = self._close(s, f + 1, offset=False)
                    pieces.append(piece)
                    s = replace(s, start=f + 1, onset=False)
            s = replace(s, frame=f + 1)
        return s, pieces

    def open_start(self, state: SegmenterState) -> int:
        """First sample the open piece may need (its padding and a separation context)."""
        ctx = int(self.cfg.separation_context_s * SAMPLE_RATE)
        return max(0, state.start * VAD_FRAME - self.pad - ctx)

    def finish(self, state: SegmenterState) -> tuple[SegmenterState, list[Piece]]:
        if not state.in_speech:
            return state, []
        s, piece = self._close(state, state.last_speech + 1, offset=True)
        return replace(s, in_speech=False), [piece]

    def _close(self, s: SegmenterState, end_frame: int, offset: bool):
        start = s.start * VAD_FRAME - (self.pad if s.onset else 0)
        end = end_frame * VAD_FRAME + (self.pad if offset else 0)
        start = max(start, s.last_end, 0)
        return replace(s, last_end=end), Piece(start, max(end, start), s.onset)


# --- overlap: how many speakers per frame ---------------------------------------------------


class NoOverlapDetector:
    """Used when no detector is available: every speech frame counts as one speaker."""

    name = "none"
    frame_s = FRAME_S

    def initial_state(self):
        return 0

    def step(self, state, samples: np.ndarray):
        n = (state + samples.size) // VAD_FRAME - state // VAD_FRAME
        probs = np.zeros((n, 4), np.float32)
        probs[:, 1] = 1.0
        return state + samples.size, probs

    def finish(self, state):
        return state, np.zeros((0, 4), np.float32)


class OracleOverlap:
    """Evaluation only: counts of active true sources per 32 ms frame (energy within 30 dB of
    each source's loudest frame)."""

    name = "oracle"
    frame_s = FRAME_S

    def __init__(self, sources: np.ndarray):
        s = np.asarray(sources, np.float32)
        n = s.shape[1] // VAD_FRAME
        e = np.square(s[:, : n * VAD_FRAME].reshape(s.shape[0], n, VAD_FRAME)).mean(axis=2)
        db = 10 * np.log10(e + 1e-12)
        active = db > (db.max(axis=1, keepdims=True) - 30.0)
        self.counts = active.sum(axis=0)

    @classmethod
    def from_counts(cls, counts: np.ndarray, name: str = "oracle") -> OracleOverlap:
        """The detector from known per-frame counts (a test double with a known answer)."""
        self = cls.__new__(cls)
        self.counts = np.asarray(counts, np.int64)
        self.name = name
        return self

    def initial_state(self):
        return 0

    def step(self, state, samples: np.ndarray):
        f0, f1 = state // VAD_FRAME, (state + samples.size) // VAD_FRAME
        c = np.zeros(f1 - f0, np.int64)
        have = self.counts[f0 : min(f1, self.counts.size)]
        c[: have.size] = have
        probs = np.eye(4, dtype=np.float32)[np.clip(c, 0, 3)]
        return state + samples.size, probs

    def finish(self, state):
        return state, np.zeros((0, 4), np.float32)


# --- separation of one overlapped piece ---------------------------------------------------


class Separator:
    """MossFormer2 on one piece (with context either side): (S, n) sources.

    Holds one model per source count (2 and 3 when both are converted); a piece goes to the
    model whose count equals the overlap detector's (two or three voices at once), else to
    the nearest larger one, else to the largest: a 3-source model on two voices gives one
    near-empty source (dropped by its energy and VAD checks), a 2-source model on three voices
    gives two."""

    def __init__(self, *models, note=None):
        self.models = {m.num_spks: m for m in models}
        self.num_spks = max(self.models)
        self.name = "mossformer2"
        self._note, self._short = note, False

    def model_for(self, count: int):
        bigger = [n for n in self.models if n >= count]
        if not bigger and not self._short and self._note is not None:
            self._short = True
            self._note(
                f"{count} voices at once, but the separator separates {self.num_spks} "
                f"(a {count}-source MossFormer2 under weights/ separates them all)"
            )
        return self.models[min(bigger) if bigger else self.num_spks]

    def __call__(self, audio: np.ndarray, start: int, count: int = 2) -> np.ndarray:
        import mlx.core as mx

        out = self.model_for(count)(mx.array(audio[None].astype(np.float32)))  # (1, n, S)
        return np.array(out[0]).T


class OracleSeparator:
    """Evaluation only: returns the true sources of the requested span."""

    name = "oracle"

    def __init__(self, sources: np.ndarray):
        self.sources = np.asarray(sources, np.float32)
        self.num_spks = self.sources.shape[0]

    def __call__(self, audio: np.ndarray, start: int, count: int = 2) -> np.ndarray:
        out = np.zeros((self.num_spks, audio.size), np.float32)
        have = self.sources[:, start : start + audio.size]
        out[:, : have.shape[1]] = have
        return out
