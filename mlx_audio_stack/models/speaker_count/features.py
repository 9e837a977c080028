"""Log-mel features for the speaker counter: cheap, frame-exact in streaming.

No centre padding: feature frame i covers samples [HOP * i, HOP * i + N_FFT), so a stream
can compute each frame as soon as its samples have arrived and get the same numbers as a
whole-file pass. Computed in float64 numpy (FFT, mel matrix), returned as float32; the mel
projection sums each row in a fixed order, so a chunked run equals a whole-file one.
"""

from __future__ import annotations

from functools import cache

import numpy as np

SAMPLE_RATE = 16000
N_FFT = 400  # 25 ms window
HOP_LENGTH = 160  # 10 ms hop: 100 feature frames per second
LOG_FLOOR = 1e-8  # log10(mel + floor): digital silence maps to -8


@cache
def mel_matrix(n_mels: int, n_fft: int = N_FFT, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """(n_fft // 2 + 1, n_mels) Slaney mel filterbank (librosa), float64."""
    import librosa

    return librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, dtype=np.float64).T


@cache
def hann(n: int = N_FFT) -> np.ndarray:
    # periodic Hann, as torch.hann_window's default
    return 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)


def num_frames(n_samples: int, n_fft: int = N_FFT, hop: int = HOP_LENGTH) -> int:
    """Complete feature frames in `n_samples` samples."""
    return 0 if n_samples < n_fft else 1 + (n_samples - n_fft) // hop


def log_mel(
    audio: np.ndarray, n_mels: int, n_fft: int = N_FFT, hop: int = HOP_LENGTH
) -> np.ndarray:
    """(num_frames(len(audio)), n_mels) float32 log10 mel power of every complete frame."""
    x = np.asarray(audio, dtype=np.float64)
    n = num_frames(x.size, n_fft, hop)
    if n == 0:
        return np.zeros((0, n_mels), dtype=np.float32)
    frames = np.lib.stride_tricks.as_strided(
        x, shape=(n, n_fft), strides=(hop * x.strides[0], x.strides[0]), writeable=False
    )  # (n, n_fft) views
    spec = np.fft.rfft(frames * hann(n_fft), axis=-1)  # (n, n_fft // 2 + 1)
    power = spec.real**2 + spec.imag**2
    # einsum's own loop, not BLAS: numpy's BLAS thread pool fought MLX's for the 2 cores
    # here and made each 0.5 s stream step ~15 ms (RTF 0.03-0.05 vs 0.008 this way)
    mel = np.einsum("tf,fm->tm", power, mel_matrix(n_mels, n_fft), optimize=False)  # (n, m)
    return np.log10(mel + LOG_FLOOR).astype(np.float32)


def silence_value() -> np.float32:
    """The feature value of digital silence (used to pad the sequence ends)."""
    return np.float32(np.log10(LOG_FLOOR))
