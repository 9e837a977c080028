"""Whisper's log-mel front end in MLX (reference: openai-whisper `whisper/audio.py`)."""

from __future__ import annotations

from functools import cache

import mlx.core as mx
import numpy as np

SAMPLE_RATE = 16000
N_FFT = 400  # 25 ms window
HOP_LENGTH = 160  # 10 ms hop
CHUNK_LENGTH = 30  # seconds per decoding window
N_SAMPLES = CHUNK_LENGTH * SAMPLE_RATE  # 480000 samples in a 30 s window
N_FRAMES = N_SAMPLES // HOP_LENGTH  # 3000 mel frames in a window
N_SAMPLES_PER_TOKEN = HOP_LENGTH * 2  # the encoder's stride-2 conv: 320 samples per position
FRAMES_PER_SECOND = SAMPLE_RATE // HOP_LENGTH  # 100 mel frames per second (10 ms)
TOKENS_PER_SECOND = SAMPLE_RATE // N_SAMPLES_PER_TOKEN  # 50 audio positions per second (20 ms)


@cache
def mel_filters(n_mels: int) -> mx.array:
    """(n_fft // 2 + 1, n_mels) Slaney mel filterbank, as openai-whisper's mel_filters.npz
    (which was made with `librosa.filters.mel(sr=16000, n_fft=400, n_mels=n_mels)`)."""
    if n_mels not in (80, 128):
        raise ValueError(f"n_mels: Whisper uses 80 or 128 mel bins, got {n_mels}")
    import librosa

    return mx.array(librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=n_mels).T)


@cache
def hann_window(n: int = N_FFT) -> mx.array:
    # periodic Hann, as torch.hann_window's default
    return mx.array((0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)).astype(np.float32))


def stft_power(audio: mx.array) -> mx.array:
    """|STFT|^2 with torch.stft's centre=True reflect padding: (n_frames, n_fft // 2 + 1),
    n_frames = len(audio) // HOP_LENGTH (the last frame is dropped, as in openai-whisper)."""
    pad = N_FFT // 2
    n = audio.shape[0]
    if n <= pad:
        raise ValueError(f"audio: need more than {pad} samples for the STFT, got {n}")
    x = mx.concatenate([audio[1 : pad + 1][::-1], audio, audio[-pad - 1 : -1][::-1]])
    n_frames = 1 + (x.shape[0] - N_FFT) // HOP_LENGTH
    frames = mx.as_strided(x, shape=(n_frames, N_FFT), strides=(HOP_LENGTH, 1))
    spec = mx.fft.rfft(frames * hann_window(), axis=-1)  # (n_frames, 201)
    return mx.square(mx.abs(spec[:-1]))


def log_mel_spectrogram(
    audio: np.ndarray | mx.array,
    n_mels: int = 80,
    padding: int = 0,
    max_value: mx.array | None = None,
) -> mx.array:
    """(n_frames, n_mels) log-mel, normalised as openai-whisper: log10, floor at (max - 8),
    then (x + 4) / 4. `padding` zeros are appended first. `max_value` overrides the global
    maximum of the log spectrum (used when a long file is processed block by block)."""
    audio = mx.array(audio) if not isinstance(audio, mx.array) else audio
    audio = audio.astype(mx.float32)
    if padding > 0:
        audio = mx.concatenate([audio, mx.zeros((padding,), dtype=mx.float32)])
    mel = stft_power(audio) @ mel_filters(n_mels)  # (n_frames, n_mels)
    log_spec = mx.log10(mx.maximum(mel, 1e-10))
    top = log_spec.max() if max_value is None else max_value
    log_spec = mx.maximum(log_spec, top - 8.0)
    return (log_spec + 4.0) / 4.0


def pad_or_trim(x: mx.array, length: int = N_FRAMES, axis: int = 0) -> mx.array:
    """Pad with zeros or trim along `axis` to `length` (frames of a mel, or samples)."""
    n = x.shape[axis]
    if n > length:
        idx = [slice(None)] * x.ndim
        idx[axis] = slice(0, length)
        return x[tuple(idx)]
    if n < length:
        widths = [(0, 0)] * x.ndim
        widths[axis] = (0, length - n)
        return mx.pad(x, widths)
    return x
