"""The voice encoder's front end: resemblyzer's mel spectrogram and its partial utterances.

`resemblyzer.audio.wav_to_mel_spectrogram` is `librosa.feature.melspectrogram(y, sr=16000,
n_fft=400, hop_length=160, n_mels=40)` transposed: a periodic Hann window of 400 samples,
frames centred (`center=True`, zero padding of n_fft // 2 at both ends: librosa >= 0.10's
default pad mode), |STFT|^2 (power, *not* log) and librosa's Slaney mel filterbank
(librosa.filters.mel, a core dependency). Here the same in NumPy float32 for a whole batch.

Partial utterances (`VoiceEncoder.compute_partial_slices`): 160-frame (1.6 s) windows every
round(16000 / rate / 160) frames (77 at rate 1.3); the last one is dropped when it covers
less than `min_coverage` of its span with real samples, unless it is the only one. The
waveform is zero-padded to the end of the last window.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .model import VoiceEncoderArgs

RATE = 1.3  # partial utterances per second (embed_utterance's default)
MIN_COVERAGE = 0.75  # embed_utterance's default


@lru_cache(maxsize=4)
def mel_basis(sr: int, n_fft: int, n_mels: int) -> np.ndarray:
    """librosa's Slaney mel filterbank (n_mels, n_fft // 2 + 1), transposed (bins, n_mels)."""
    import librosa

    fb = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels).astype(np.float32)
    return np.ascontiguousarray(fb.T)


@lru_cache(maxsize=4)
def hann(n: int) -> np.ndarray:
    """Periodic Hann window in float64, as librosa's `get_window('hann', n, fftbins=True)`."""
    return 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)


def n_frames(n_samples: int, hop: int) -> int:
    """Frames of a centred STFT of n_samples: 1 + n_samples // hop."""
    return 1 + n_samples // hop


def mel_frames(
    wav: np.ndarray,
    args: VoiceEncoderArgs,
    start: int = 0,
    count: int | None = None,
    offset: int = 0,
) -> np.ndarray:
    """Power mel frames [start, start + count) of `wav` (centred framing) -> (count, n_mels).

    Frame j covers samples [j * hop - n_fft // 2, j * hop + n_fft // 2), zeros outside `wav`.
    `offset`: the sample index of wav[0] in the stream (a streaming buffer's start).
    """
    n_fft, hop = args.n_fft, args.hop
    total = n_frames(offset + wav.size, hop)
    count = total - start if count is None else count
    half = n_fft // 2
    lo = start * hop - half  # first sample of the first frame
    hi = (start + count - 1) * hop + half + (n_fft - 2 * half)  # one past its last
    seg = np.zeros(max(hi - lo, n_fft), np.float32)
    a, b = max(lo, offset), min(hi, offset + wav.size)
    if b > a:
        seg[a - lo : b - lo] = wav[a - offset : b - offset]
    frames = np.lib.stride_tricks.sliding_window_view(seg, n_fft)[::hop][:count]  # (count, n_fft)
    # as librosa: float32 frames x float64 window, FFT in float64, stored as complex64, |.|^2
    spec = np.fft.rfft(frames * hann(n_fft), axis=-1).astype(np.complex64)
    power = np.abs(spec)
    power *= power
    out = np.empty((count, args.mel_n_channels), np.float32)
    np.matmul(power, mel_basis(args.sampling_rate, n_fft, args.mel_n_channels), out=out)
    return out


def partial_slices(
    n_samples: int, args: VoiceEncoderArgs, rate: float = RATE, min_coverage: float = MIN_COVERAGE
) -> list[int]:
    """Start frames of the partial utterances of an n_samples waveform (resemblyzer's
    `compute_partial_slices`; each spans `partials_n_frames` frames, `hop` samples each)."""
    if not 0 < min_coverage <= 1:
        raise ValueError(f"min_coverage: expected (0, 1], got {min_coverage}")
    hop, pn = args.hop, args.partials_n_frames
    frames = int(np.ceil((n_samples + 1) / hop))
    step = int(np.round((args.sampling_rate / rate) / hop))
    if not 0 < step <= pn:
        lowest = args.sampling_rate / (hop * pn)
        raise ValueError(f"rate {rate}: expected one giving 1..{pn} frames per step (>= {lowest})")
    starts = list(range(0, max(1, frames - pn + step + 1), step))
    last = starts[-1] * hop
    coverage = (n_samples - last) / (pn * hop)
    if coverage < min_coverage and len(starts) > 1:
        starts = starts[:-1]
    return starts


def utterance_partials(
    wav: np.ndarray, args: VoiceEncoderArgs, rate: float = RATE, min_coverage: float = MIN_COVERAGE
) -> np.ndarray:
    """The mel partials of one utterance, as `embed_utterance` builds them -> (P, 160, n_mels).

    The waveform is padded with zeros to the end of the last partial when that lies beyond it
    (short utterances get one zero-padded partial), then the mel of the padded waveform is cut.
    """
    starts = partial_slices(wav.size, args, rate, min_coverage)
    pn = args.partials_n_frames
    # `mel_frames` reads zeros past the end: the same frames as the zero-padded waveform's
    mel = mel_frames(wav, args, 0, starts[-1] + pn)
    return np.stack([mel[s : s + pn] for s in starts])
