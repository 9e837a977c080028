"""Streaming Silero VAD: one chunk in, one speech probability out.

The state is a value (`VADState`: LSTM h and c, the previous chunk's last samples as context,
the sample rate) passed in and returned by `vad_step`; `VADStream` is a small object holding
one. Each branch runs one compiled MLX function per chunk (`mx.compile` fuses the small
element-wise ops; per-op overhead dominates at this size).
"""

from __future__ import annotations

from dataclasses import dataclass

import mlx.core as mx
import numpy as np

from ...errors import AudioError
from .model import SileroVAD, VADBranch


@dataclass(frozen=True)
class VADState:
    """Streaming state of B parallel streams at one sample rate."""

    h: mx.array  # (B, H) LSTM hidden state
    c: mx.array  # (B, H) LSTM cell state
    context: mx.array  # (B, ctx) last samples of the previous chunk (zeros at the start)
    sample_rate: int


def initial_state(model: SileroVAD, sample_rate: int = 16000, batch_size: int = 1) -> VADState:
    """The state at the start of a stream (also what a reset returns)."""
    branch = _streaming_branch(model, sample_rate)
    hd = model.args.hidden_size
    ctx = branch.args.context_size_samples
    return VADState(
        mx.zeros((batch_size, hd)),
        mx.zeros((batch_size, hd)),
        mx.zeros((batch_size, ctx)),
        sample_rate,
    )


def _streaming_branch(model: SileroVAD, sample_rate: int) -> VADBranch:
    if sample_rate not in model.sample_rates:
        raise AudioError(
            f"streaming at {sample_rate} Hz is not supported: feed {sorted(model.sample_rates)} "
            f"Hz chunks (resample first, e.g. mlx_audio_stack.audio.resample)"
        )
    return model.branch(sample_rate)


def _step_fn(branch: VADBranch):
    """The branch's compiled chunk step (built once, kept on the branch, not a parameter):
    (chunk (B, n), context (B, ctx), h, c) -> (probs (B,), h, c, next context)."""
    fn = branch.__dict__.get("_compiled_step")
    if fn is None:
        ctx = branch.args.context_size_samples

        def step(chunk, context, h, c):
            full = mx.concatenate([context, chunk], axis=1)  # (B, ctx + n)
            prob, h, c = branch(full, h, c)
            return prob, h, c, full[:, -ctx:]

        fn = mx.compile(step)
        object.__setattr__(branch, "_compiled_step", fn)
    return fn


def vad_step(model: SileroVAD, chunk: np.ndarray, state: VADState) -> tuple[np.ndarray, VADState]:
    """Feed one chunk per stream: `chunk` (n,) or (B, n) float32, n = 512 at 16 kHz, 256 at 8 kHz.

    Returns (probabilities (B,), new state). Raises AudioError for a chunk of the wrong size,
    a batch size that differs from the state's, or NaN/inf samples.
    """
    prob, state = _step(model, chunk, state)
    return np.array(prob), state


def _step(model: SileroVAD, chunk: np.ndarray, state: VADState) -> tuple[mx.array, VADState]:
    branch = model.branch(state.sample_rate)
    n = branch.args.num_samples
    x = np.asarray(chunk, dtype=np.float32)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2 or x.shape[1] != n:
        raise AudioError(
            f"chunk: expected {n} samples at {state.sample_rate} Hz "
            f"(shape ({n},) or (B, {n})), got shape {np.shape(chunk)}"
        )
    if x.shape[0] != state.context.shape[0]:
        raise AudioError(
            f"chunk: batch of {x.shape[0]} streams, but the state holds "
            f"{state.context.shape[0]}; start a new state"
        )
    if not np.isfinite(x).all():
        raise AudioError(
            f"chunk: {int((~np.isfinite(x)).sum())} of {x.size} samples are NaN or inf"
        )
    prob, h, c, context = _step_fn(branch)(mx.array(x), state.context, state.h, state.c)
    return prob, VADState(h, c, context, state.sample_rate)


class VADStream:
    """One live stream: `prob = stream(chunk)` for each 512-sample (16 kHz) / 256 (8 kHz) chunk.

    The state lives in `self.state` (a `VADState` value); `reset()` starts over.
    """

    def __init__(self, model: SileroVAD, sample_rate: int = 16000):
        self.model = model
        self.sample_rate = sample_rate
        self.state = initial_state(model, sample_rate)

    @property
    def chunk_size(self) -> int:
        return self.model.branch(self.sample_rate).args.num_samples

    def reset(self) -> None:
        self.state = initial_state(self.model, self.sample_rate)

    def __call__(self, chunk: np.ndarray) -> float:
        prob, self.state = _step(self.model, chunk, self.state)
        return prob.item()


class VADEvents:
    """Speech start/end events from a live stream, with silero's `VADIterator` semantics.

    `events(chunk)` returns {"start": t}, {"end": t} or None; t in samples (or seconds when
    `return_seconds`), counted from the stream's start.
    """

    def __init__(
        self,
        model: SileroVAD,
        threshold: float = 0.5,
        sample_rate: int = 16000,
        min_silence_duration_ms: int = 100,
        speech_pad_ms: int = 30,
    ):
        self.stream = VADStream(model, sample_rate)
        self.threshold = threshold
        self.sample_rate = sample_rate
        self.min_silence_samples = sample_rate * min_silence_duration_ms / 1000
        self.speech_pad_samples = sample_rate * speech_pad_ms / 1000
        self.reset()

    def reset(self) -> None:
        self.stream.reset()
        self.triggered = False
        self.temp_end = 0
        self.current_sample = 0

    def _time(self, t: float, return_seconds: bool, time_resolution: int):
        return round(t / self.sample_rate, time_resolution) if return_seconds else int(t)

    def __call__(
        self, chunk: np.ndarray, return_seconds: bool = False, time_resolution: int = 1
    ) -> dict | None:
        n = np.shape(chunk)[-1]
        prob = self.stream(chunk)
        self.current_sample += n
        if prob >= self.threshold:
            self.temp_end = 0
            if not self.triggered:
                self.triggered = True
                start = max(0, self.current_sample - self.speech_pad_samples - n)
                return {"start": self._time(start, return_seconds, time_resolution)}
        elif prob < self.threshold - 0.15 and self.triggered:
            if not self.temp_end:
                self.temp_end = self.current_sample
            if self.current_sample - self.temp_end >= self.min_silence_samples:
                end = self.temp_end + self.speech_pad_samples - n
                self.temp_end = 0
                self.triggered = False
                return {"end": self._time(end, return_seconds, time_resolution)}
        return None
