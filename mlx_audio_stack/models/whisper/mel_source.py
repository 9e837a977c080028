"""Log-mel frames of a whole recording, served window by window with bounded memory.

openai-whisper computes the log-mel of (audio + 30 s of zeros) at once and floors it at
(global max - 8). Here the same frames are computed in blocks: a first pass finds the global
maximum, then 30 s windows are computed (or sliced from a cache, for recordings up to
`CACHE_FRAMES`) on demand. Files longer than `STREAM_SECONDS` are never held in memory whole:
their samples are read block by block from disk in both passes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import mlx.core as mx
import numpy as np

from ...audio import as_audio, audio_info, is_long, load_audio, stream_audio, stream_length
from ...errors import AudioError
from .audio import HOP_LENGTH, N_FFT, N_SAMPLES, SAMPLE_RATE, hann_window, mel_filters

STREAM_SECONDS = 15 * 60  # longer files are streamed from disk
CACHE_FRAMES = 15 * 60 * 100  # keep all log-mel frames in memory up to 15 min (36 MB at 80 bins)
BLOCK_FRAMES = 6000  # frames per block in the first pass (60 s)
PAD = N_FFT // 2  # 200 samples of centre padding on each side


class MelSource:
    """Log-mel frames (n_frames, n_mels) of audio followed by 30 s of zeros."""

    def __init__(self, n_samples: int, samples: Callable[[int, int], np.ndarray], n_mels: int):
        if n_samples == 0:
            raise AudioError("audio is empty (0 samples)")
        self.n_samples = n_samples
        self._samples = samples  # (start, stop) -> float32 samples, start >= 0
        self.n_mels = n_mels
        self.content_frames = n_samples // HOP_LENGTH
        self.total_frames = (n_samples + N_SAMPLES) // HOP_LENGTH
        self._cache: mx.array | None = None
        self.max_value = self._first_pass()

    @classmethod
    def from_input(cls, audio: str | Path | np.ndarray, n_mels: int) -> MelSource:
        if isinstance(audio, (str, Path)):
            path = Path(audio)
            info = audio_info(path)  # regular, readable, not cut short, not empty
            if info.duration > STREAM_SECONDS or is_long(info):
                return cls(*_streamed(path), n_mels)
            x = load_audio(path, SAMPLE_RATE)
        else:
            x = as_audio(audio, SAMPLE_RATE)
        return cls(len(x), lambda a, b: x[a:b], n_mels)

    # ------------------------------------------------------------------ frames
    def _padded(self, start: int, stop: int) -> np.ndarray:
        """Samples [start, stop), 0 <= start, of audio followed by zeros."""
        out = np.zeros(stop - start, dtype=np.float32)
        hi = min(stop, self.n_samples)
        if hi > start:
            out[: hi - start] = self._samples(start, hi)
        return out

    def _signal(self, start: int, stop: int) -> np.ndarray:
        """Samples [start, stop) of audio + zero padding, reflected at index 0 (torch.stft)."""
        if start >= 0:
            return self._padded(start, stop)
        # reflect: x[-k] = x[k], taken from the zero-padded signal (torch pads after
        # openai-whisper appended its 30 s of zeros)
        left = self._padded(1, 1 - start)[::-1][: min(0, stop) - start]
        return np.concatenate([left, self._padded(0, stop)]) if stop > 0 else left

    def _log_power(self, f0: int, f1: int) -> mx.array:
        """log10 mel power of frames [f0, f1): (f1 - f0, n_mels)."""
        x = mx.array(self._signal(f0 * HOP_LENGTH - PAD, (f1 - 1) * HOP_LENGTH + N_FFT - PAD))
        frames = mx.as_strided(x, shape=(f1 - f0, N_FFT), strides=(HOP_LENGTH, 1))
        power = mx.square(mx.abs(mx.fft.rfft(frames * hann_window(), axis=-1)))
        return mx.log10(mx.maximum(power @ mel_filters(self.n_mels), 1e-10))

    def _first_pass(self) -> mx.array:
        # frames after content_frames + 3 see only padding zeros: log10(1e-10) = -10
        last = min(self.total_frames, self.content_frames + 3)
        top = mx.array(-10.0)
        blocks = []
        for f0 in range(0, last, BLOCK_FRAMES):
            lp = self._log_power(f0, min(last, f0 + BLOCK_FRAMES))
            top = mx.maximum(top, lp.max())
            if last <= CACHE_FRAMES:
                blocks.append(lp)
            mx.eval(top, *blocks[-1:])
        if blocks:
            self._cache = mx.concatenate(blocks) if len(blocks) > 1 else blocks[0]
        return top

    def window(self, seek: int, n_frames: int) -> mx.array:
        """Normalised log-mel frames [seek, seek + n_frames) (clipped to the padded length)."""
        stop = min(seek + n_frames, self.total_frames)
        if self._cache is not None and stop <= self._cache.shape[0]:
            lp = self._cache[seek:stop]
        else:
            lp = self._log_power(seek, stop)
        return (mx.maximum(lp, self.max_value - 8.0) + 4.0) / 4.0


def _streamed(path: Path) -> tuple[int, Callable[[int, int], np.ndarray]]:
    """Sample count and a forward-only sample reader that keeps a bounded buffer."""
    info = audio_info(path)
    n = stream_length(info, SAMPLE_RATE)
    state = {"it": None, "buf": np.zeros(0, np.float32), "start": 0}

    def reset() -> None:
        state["it"] = iter(stream_audio(path, block_s=60.0, sr=SAMPLE_RATE))
        state["buf"], state["start"] = np.zeros(0, np.float32), 0

    def samples(a: int, b: int) -> np.ndarray:
        b = min(b, n)
        if state["it"] is None or a < state["start"]:
            reset()  # a new pass (or a look back past the buffer): reopen the file
        it: Iterator[np.ndarray] = state["it"]
        while state["start"] + len(state["buf"]) < b:
            block = next(it, None)
            if block is None:
                break
            state["buf"] = np.concatenate([state["buf"], block])
        # drop what lies before a - 1 s; windows only move forward (1 s covers reflection)
        drop = max(0, a - SAMPLE_RATE - state["start"])
        if drop:
            state["buf"], state["start"] = state["buf"][drop:], state["start"] + drop
        out = state["buf"][a - state["start"] : b - state["start"]]
        return np.pad(out, (0, (b - a) - len(out)))

    return n, samples
