"""Streaming speaker embeddings for the tracker: an embedding of the last N seconds, updated
as audio arrives, each partial utterance computed once.

The stream lays resemblyzer's partial utterances on its own grid: 1.6 s partials starting
every round(16000 / rate / 160) frames (0.77 s at rate 1.3) from the stream's first sample,
framed exactly as `embed_utterance` frames a waveform that starts there. A partial is
embedded once, as soon as its last frame's samples have arrived, and kept while it lies inside
the window. The embedding is the L2-normalised mean of the partials that start inside the last
`window_s` seconds (always at least the newest one), which is what `embed_utterance` of the
whole stream computes restricted to those partials. Before the first partial is complete it is
`embed_utterance` of everything so far (one zero-padded partial, as resemblyzer does for short
audio).

State is a value passed in and returned (STYLE.md rules 4 and 12):

    stream = EmbeddingStream(encoder, window_s=5.0)
    state = stream.initial_state()
    for chunk in chunks:                       # float32 at 16 kHz, any length
        state, emb = stream.step(state, chunk)  # emb: (256,) unit vector, None before audio
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from .embed import VoiceEncoder
from .frontend import RATE, mel_frames


@dataclass(frozen=True)
class StreamState:
    """Everything the stream knows; `step` returns a new one and never changes the old."""

    samples: int = 0  # samples received so far
    offset: int = 0  # stream index of audio[0]
    audio: np.ndarray = field(
        default_factory=lambda: np.zeros(0, np.float32)
    )  # kept samples (what future partials need)
    next_partial: int = 0  # index k of the next partial (starts at frame k * step)
    starts: tuple[int, ...] = ()  # start frames of the kept partials
    partials: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))  # (P, dim)


class EmbeddingStream:
    """An embedding of the last `window_s` seconds of a stream (see the module docstring)."""

    def __init__(self, encoder: VoiceEncoder, window_s: float = 5.0, rate: float = RATE):
        args = encoder.args
        self.encoder = encoder
        self.hop, self.half = args.hop, args.n_fft // 2
        self.frames = args.partials_n_frames
        self.step_frames = int(np.round((args.sampling_rate / rate) / self.hop))
        if not 0 < self.step_frames <= self.frames:
            raise ValueError(f"rate {rate}: partials would leave gaps or never advance")
        if window_s <= 0:
            raise ValueError(f"window_s: expected > 0, got {window_s}")
        self.window = int(round(window_s * args.sampling_rate))
        self.sample_rate = args.sampling_rate

    def initial_state(self) -> StreamState:
        return StreamState(partials=np.zeros((0, self.encoder.dim), np.float32))

    def _ready(self, k: int) -> int:
        """Samples the stream must have before partial k's last frame can be computed."""
        return (k * self.step_frames + self.frames - 1) * self.hop + self.half

    def step(self, state: StreamState, chunk: np.ndarray) -> tuple[StreamState, np.ndarray | None]:
        """Add `chunk` (float32 samples at 16 kHz) -> (new state, embedding (dim,) or None)."""
        chunk = np.asarray(chunk, np.float32).reshape(-1)
        audio = np.concatenate([state.audio, chunk])
        samples = state.samples + chunk.size
        k0 = k = state.next_partial
        while self._ready(k) <= samples:
            k += 1
        starts, partials = state.starts, state.partials
        if k > k0:  # new complete partials: their mels from the kept audio, one batch
            new = [i * self.step_frames for i in range(k0, k)]
            mels = np.stack(
                [mel_frames(audio, self.encoder.args, s, self.frames, state.offset) for s in new]
            )
            starts = starts + tuple(new)
            partials = np.concatenate([partials, self.encoder.embed_partials(mels)])
        # keep the partials starting inside the window (at least the newest)
        cut = samples - self.window
        keep = [i for i, s in enumerate(starts) if s * self.hop >= cut] or [len(starts) - 1]
        if starts:
            starts, partials = tuple(starts[i] for i in keep), partials[keep]
        # keep the audio the next partial needs (all of it until the first is complete)
        need = max(0, k * self.step_frames * self.hop - self.half) if starts else 0
        drop = max(0, need - state.offset)
        new_state = replace(
            state,
            samples=samples,
            offset=state.offset + drop,
            audio=audio[drop:].copy(),
            next_partial=k,
            starts=starts,
            partials=partials,
        )
        if samples == 0:
            return new_state, None
        if not starts:  # shorter than one partial: embed_utterance of all of it
            return new_state, self.encoder.embed(audio)[0]
        raw = partials.mean(axis=0)
        return new_state, (raw / np.linalg.norm(raw)).astype(np.float32)
