"""SpeechBrain's `Fbank` front end (speechbrain.lobes.features.Fbank) and the sentence mean
normalization (`InputNormalization(norm_type="sentence", std_norm=False)`) in MLX.

What SpeechBrain computes for spkrec-ecapa-voxceleb, step by step:
1. STFT: 25 ms periodic Hamming window (400 samples at 16 kHz), 10 ms hop (160), n_fft 400,
   `center=True` with zero ("constant") padding of n_fft // 2 on both ends, so a signal of
   T samples gives 1 + T // hop frames.
2. power spectrum |X|^2 (its `spectral_magnitude(power=1)` of the squared real/imag parts);
3. a triangular mel filterbank built in Hz from mel-spaced centers (HTK mel formula);
4. 10 * log10(max(x, 1e-10)), then a per-utterance floor at (max over time and mel) - 80 dB.

Layout: waveforms (B, T) -> features (B, frames, n_mels), channels-last.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import mlx.core as mx
import numpy as np

# sane ranges for a config's front end (checked by weights_io.checked_args)
FBANK_LIMITS = {
    "n_mels": (1, 1024),
    "sample_rate": (1000, 384000),
    "n_fft": (2, 65536),
    "win_length": (0, 1000),
    "hop_length": (0, 1000),
    "f_min": (-1e-9, 192000),
    "amin": (0, 1),
    "top_db": (0, 1000),
}


@dataclass
class FbankArgs:
    """The `Fbank` keyword arguments of SpeechBrain's hyperparams.yaml (same names)."""

    n_mels: int = 40
    sample_rate: int = 16000
    n_fft: int = 400
    win_length: float = 25  # milliseconds
    hop_length: float = 10  # milliseconds
    f_min: float = 0.0
    f_max: float | None = None  # None: sample_rate // 2
    filter_shape: str = "triangular"
    amin: float = 1e-10
    top_db: float = 80.0

    @property
    def win_samples(self) -> int:
        return int(round(self.sample_rate / 1000.0 * self.win_length))  # 400 at 16 kHz

    @property
    def hop_samples(self) -> int:
        return int(round(self.sample_rate / 1000.0 * self.hop_length))  # 160 at 16 kHz


def num_frames(n_samples: int | np.ndarray, hop: int):
    """Frames a centered STFT gives for `n_samples` samples: 1 + n // hop."""
    return 1 + np.asarray(n_samples) // hop


def _hz_to_mel(hz: float) -> float:
    return 2595 * math.log10(1 + hz / 700)


def linspace_f32(start: float, end: float, steps: int) -> np.ndarray:
    """torch.linspace in float32, bit for bit: the first half counts up from `start`, the
    second half down from `end` (np.linspace rounds differently)."""
    a, b = np.float32(start), np.float32(end)
    step = np.float32((b - a) / np.float32(steps - 1))
    i = np.arange(steps)
    up = a + step * i.astype(np.float32)
    down = b - step * (steps - 1 - i).astype(np.float32)
    return np.where(i < steps // 2, up, down).astype(np.float32)


def mel_filterbank(args: FbankArgs) -> np.ndarray:
    """(n_fft // 2 + 1, n_mels) float32 matrix, rounded the way SpeechBrain builds it in torch
    (its filter edges differ from a float64 construction by ~1e-5, i.e. ~1e-4 dB)."""
    f_max = args.f_max if args.f_max is not None else args.sample_rate // 2
    n_stft = args.n_fft // 2 + 1
    mel = linspace_f32(_hz_to_mel(args.f_min), _hz_to_mel(f_max), args.n_mels + 2)
    # float32 division, power rounded from float64 (matches torch's pow on all but ~1 value)
    p = np.power(10.0, (mel / np.float32(2595)).astype(np.float64)).astype(np.float32)
    hz = (np.float32(700) * (p - np.float32(1))).astype(np.float32)
    band = (hz[1:] - hz[:-1])[:-1]  # (n_mels,)
    f_central = hz[1:-1]  # (n_mels,)
    freqs = linspace_f32(0, args.sample_rate // 2, n_stft)  # (n_stft,)
    if args.filter_shape == "triangular":
        slope = (freqs[None, :] - f_central[:, None]) / band[:, None]  # (n_mels, n_stft)
        fb = np.maximum(0.0, np.minimum(slope + 1.0, 1.0 - slope))
    elif args.filter_shape == "rectangular":
        lo, hi = (f_central - band)[:, None], (f_central + band)[:, None]
        fb = ((freqs[None, :] >= lo) & (freqs[None, :] <= hi)).astype(np.float32)
    elif args.filter_shape == "gaussian":
        fb = np.exp(-0.5 * ((freqs[None, :] - f_central[:, None]) / (band[:, None] / 2)) ** 2)
    else:
        raise ValueError(
            f"filter_shape: expected triangular/rectangular/gaussian, got {args.filter_shape!r}"
        )
    return np.ascontiguousarray(fb.T.astype(np.float32))  # (n_stft, n_mels)


def hamming_periodic(n: int) -> np.ndarray:
    """torch.hamming_window(n) (periodic=True): 0.54 - 0.46 cos(2 pi k / n)."""
    k = np.arange(n, dtype=np.float64)
    return (0.54 - 0.46 * np.cos(2 * np.pi * k / n)).astype(np.float32)


class Fbank:
    """Log mel filterbank features exactly as SpeechBrain's `Fbank` (no deltas, no context)."""

    def __init__(self, args: FbankArgs):
        self.args = args
        if args.win_samples > args.n_fft:
            raise ValueError(f"win_length {args.win_samples} samples > n_fft {args.n_fft}")
        win = hamming_periodic(args.win_samples)
        # torch.stft centers a shorter window inside n_fft
        left = (args.n_fft - args.win_samples) // 2
        full = np.zeros(args.n_fft, np.float32)
        full[left : left + args.win_samples] = win
        self.window = mx.array(full)
        self.fb = mx.array(mel_filterbank(args))  # (n_fft//2+1, n_mels)

    def frames(self, wav: mx.array) -> mx.array:
        """(B, T) -> (B, 1 + T // hop, n_fft) windowed frames of the zero-padded signal."""
        n_fft, hop = self.args.n_fft, self.args.hop_samples
        b, t = wav.shape
        pad = n_fft // 2
        x = mx.pad(wav, [(0, 0), (pad, pad)])  # (B, T + n_fft)
        n = 1 + t // hop
        x = mx.as_strided(x, shape=(b, n, n_fft), strides=(t + 2 * pad, hop, 1))
        return x * self.window  # (B, n, n_fft)

    def __call__(self, wav: mx.array, valid_frames: mx.array | None = None) -> mx.array:
        """(B, T) float32 waveforms -> (B, frames, n_mels) log mel features in dB.

        The -top_db floor is per utterance over all frames (as SpeechBrain: padding frames of
        a zero-padded batch are quieter than speech and never set the maximum).
        """
        if wav.ndim == 1:
            wav = wav[None]
        spec = mx.fft.rfft(self.frames(wav.astype(mx.float32)), axis=-1)  # (B, n, n_fft//2+1)
        power = mx.square(spec.real) + mx.square(spec.imag)
        mel = power @ self.fb  # (B, n, n_mels)
        db = 10.0 * mx.log10(mx.maximum(mel, self.args.amin))
        if valid_frames is None:
            peak = db.max(axis=(1, 2), keepdims=True)  # (B, 1, 1)
        else:
            keep = mx.arange(db.shape[1])[None, :, None] < valid_frames[:, None, None]
            peak = mx.where(keep, db, -mx.inf).max(axis=(1, 2), keepdims=True)
        return mx.maximum(db, peak - self.args.top_db)


def sentence_mean_norm(
    feats: mx.array, mask: mx.array | None = None, std_norm: bool = False, eps: float = 1e-10
) -> mx.array:
    """SpeechBrain's sentence InputNormalization: subtract each utterance's mean over its
    valid frames (and divide by its std when `std_norm`).

    feats (B, frames, C); mask (B, frames) bool of valid frames, None = all valid.
    Padding frames are shifted by the same statistics, as SpeechBrain does.
    """
    m = (
        mx.ones(feats.shape[:2] + (1,), feats.dtype)
        if mask is None
        else (mask[:, :, None].astype(feats.dtype))
    )  # (B, frames, 1)
    n = m.sum(axis=1, keepdims=True)
    mean = (feats * m).sum(axis=1, keepdims=True) / n
    if not std_norm:
        return feats - mean
    std = mx.sqrt((mx.square((feats - mean) * m)).sum(axis=1, keepdims=True) / n)
    return (feats - mean) / mx.maximum(std, eps)
