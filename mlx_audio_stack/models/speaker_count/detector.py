"""Streaming and whole-file speaker counting with one definition of the window.

Output frame j is the 0.1 s span [0.1 j, 0.1 (j + 1)) of the input; a file of n samples has
F = ceil(n / 1600) frames. Token j is feature frames 10 j .. 10 j + 9 (samples
[1600 j, 1600 j + 1840)); the signal is zero-padded after its end. The token sequence the
network reads is

    [RF - 1 - lookahead silence tokens] + tokens 0 .. F - 1 + [lookahead silence tokens]

and output j sees the window of RF tokens starting at j: 1.0 s before frame j and
`lookahead` tokens (0.4 s) after it. A stream therefore emits frame j once the samples up
to 0.1 (j + 1 + lookahead) s + 15 ms have arrived; `flush` pads the end exactly as `count`
does, so the concatenated stream equals `count(audio)` (tests/test_speaker_count.py).

State is a value (`CountState`): `step(state, chunk) -> (state, probs)`.
"""

from __future__ import annotations

from dataclasses import dataclass

import mlx.core as mx
import numpy as np

from ...errors import AudioError
from .features import HOP_LENGTH, N_FFT, log_mel, num_frames, silence_value
from .model import ModelArgs, SpeakerCounter

BLOCK_TOKENS = 600  # whole-file pass in blocks of 60 s of tokens: bounded memory


def audio_tokens(x: np.ndarray, args: ModelArgs) -> np.ndarray:
    """(F, fpt, n_mels) tokens of mono float32 audio, F = ceil(n / token samples), the
    signal zero-padded after its end as far as the last token's last frame reaches."""
    ts = args.frames_per_token * HOP_LENGTH
    f = -(-x.size // ts)
    padded = np.zeros(f * ts + N_FFT - HOP_LENGTH, dtype=np.float32)
    padded[: x.size] = x
    return log_mel(padded, args.n_mels).reshape(f, args.frames_per_token, args.n_mels)


@dataclass(frozen=True)
class CountState:
    """Everything a stream carries between chunks (arrays are never modified in place)."""

    samples: np.ndarray  # (S,) float32 samples from sample HOP * frames_done on
    frames: np.ndarray  # (m < fpt, n_mels) feature frames not yet in a token
    tokens: np.ndarray  # (<= RF - 1, fpt, n_mels) the newest tokens (window context)
    received: int = 0  # samples received so far
    emitted: int = 0  # output frames returned so far
    finished: bool = False


class SpeakerCountDetector:
    """Per-0.1 s probabilities of 0 / 1 / 2 / 3+ simultaneous speakers (16 kHz mono in)."""

    def __init__(self, model: SpeakerCounter, config: dict | None = None):
        self.model = model
        self.args: ModelArgs = model.args
        self.config = config or {}
        # P(2) + P(3+) at or above this flags overlap (chosen on the validation split)
        self.overlap_threshold = float(self.config.get("overlap_threshold", 0.5))
        a = self.args
        self.token_samples = a.frames_per_token * HOP_LENGTH  # 1600 samples = 0.1 s
        self.frame_seconds = self.token_samples / a.sample_rate  # 0.1 s per output frame
        self.rf = a.receptive_field
        self.lead = self.rf - 1 - a.lookahead  # silence tokens before token 0
        # time from the end of frame j until its probabilities can be emitted
        self.latency_seconds = (a.lookahead * self.token_samples + N_FFT - HOP_LENGTH) / (
            a.sample_rate
        )

    def overlap(self, probs: np.ndarray) -> np.ndarray:
        """(F,) bool: frames where two or more speakers are likely (separation worth it)."""
        return probs[:, 2:].sum(-1) >= self.overlap_threshold

    # ---- shared pieces -------------------------------------------------------------
    def _silence(self, n: int) -> np.ndarray:
        a = self.args
        return np.full((n, a.frames_per_token, a.n_mels), silence_value(), dtype=np.float32)

    def _probs(self, tokens: np.ndarray) -> np.ndarray:
        """(T >= RF, fpt, n_mels) tokens -> (T - RF + 1, num_classes) probabilities."""
        out = []
        step = BLOCK_TOKENS
        for s in range(0, tokens.shape[0] - self.rf + 1, step):
            block = mx.array(tokens[s : s + step + self.rf - 1][None])  # (1, T_b, fpt, m)
            out.append(np.array(mx.softmax(self.model(block)[0], axis=-1)))
        if not out:
            return np.zeros((0, self.args.num_classes), dtype=np.float32)
        return np.concatenate(out).astype(np.float32)

    @staticmethod
    def _check(audio, name: str) -> np.ndarray:
        x = np.asarray(audio, dtype=np.float32)
        if x.ndim != 1:
            raise AudioError(f"{name}: expected mono (T,) 16 kHz audio, got shape {x.shape}")
        if not np.all(np.isfinite(x)):
            raise AudioError(f"{name}: audio holds NaN or inf samples")
        return x

    def num_output_frames(self, n_samples: int) -> int:
        """F = ceil(n_samples / 1600)."""
        return -(-n_samples // self.token_samples)

    # ---- whole file --------------------------------------------------------------------
    def tokens(self, audio: np.ndarray) -> np.ndarray:
        """(F, fpt, n_mels) tokens of a whole signal (zero-padded after its end)."""
        return audio_tokens(self._check(audio, "audio"), self.args)

    def count(self, audio: np.ndarray) -> np.ndarray:
        """(F, num_classes) probabilities of 0 / 1 / 2 / 3+ speakers per 0.1 s frame."""
        tok = self.tokens(audio)
        if tok.shape[0] == 0:
            return np.zeros((0, self.args.num_classes), dtype=np.float32)
        seq = np.concatenate([self._silence(self.lead), tok, self._silence(self.args.lookahead)])
        return self._probs(seq)

    # ---- streaming ---------------------------------------------------------------------
    def init_state(self) -> CountState:
        a = self.args
        return CountState(
            samples=np.zeros(0, dtype=np.float32),
            frames=np.zeros((0, a.n_mels), dtype=np.float32),
            tokens=self._silence(self.lead),
        )

    def _advance(self, state: CountState, x: np.ndarray, received: int) -> CountState:
        """Frame and tokenize the new samples (no network call)."""
        a = self.args
        buf = np.concatenate([state.samples, x])
        n = num_frames(buf.size)
        new = log_mel(buf[: (n - 1) * HOP_LENGTH + N_FFT], a.n_mels) if n else buf[:0]
        frames = np.concatenate([state.frames, new.reshape(-1, a.n_mels)])
        k = frames.shape[0] // a.frames_per_token
        tok = frames[: k * a.frames_per_token].reshape(k, a.frames_per_token, a.n_mels)
        return CountState(
            samples=buf[n * HOP_LENGTH :],
            frames=frames[k * a.frames_per_token :],
            tokens=np.concatenate([state.tokens, tok]),
            received=received,
            emitted=state.emitted,
            finished=state.finished,
        )

    def _emit(self, state: CountState, limit: int | None = None) -> tuple[CountState, np.ndarray]:
        probs = self._probs(state.tokens) if state.tokens.shape[0] >= self.rf else None
        if probs is None:
            return state, np.zeros((0, self.args.num_classes), dtype=np.float32)
        if limit is not None:
            probs = probs[: max(0, limit - state.emitted)]
        keep = state.tokens[state.tokens.shape[0] - (self.rf - 1) :]
        return (
            CountState(
                state.samples,
                state.frames,
                keep,
                state.received,
                state.emitted + probs.shape[0],
                state.finished,
            ),
            probs,
        )

    def step(self, state: CountState, chunk: np.ndarray) -> tuple[CountState, np.ndarray]:
        """Feed `chunk` (mono float32 16 kHz); returns the new state and the (k, 4)
        probabilities of every frame whose window is now complete."""
        if state.finished:
            raise AudioError("speaker-count stream: step() after flush(); start a new state")
        x = self._check(chunk, "chunk")
        return self._emit(self._advance(state, x, state.received + x.size))

    def flush(self, state: CountState) -> tuple[CountState, np.ndarray]:
        """End of input: pad as `count` does and return the remaining frames."""
        if state.finished:
            return state, np.zeros((0, self.args.num_classes), dtype=np.float32)
        f = self.num_output_frames(state.received)
        need = f * self.token_samples + N_FFT - HOP_LENGTH  # padded length, as in tokens()
        done = state.received - state.samples.size  # samples already framed away
        pad = np.zeros(max(0, need - done - state.samples.size), dtype=np.float32)
        st = self._advance(state, pad, state.received)
        st = CountState(
            st.samples,
            st.frames,
            np.concatenate([st.tokens, self._silence(self.args.lookahead)]),
            st.received,
            st.emitted,
            True,
        )
        return self._emit(st, limit=f)
