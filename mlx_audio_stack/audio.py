"""Audio loading: any file soundfile reads (wav/flac/ogg/mp3), any rate and channel count,
to mono float32 at the rate a model wants; plus streamed block reading for long files."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf

from .errors import AudioError

SAMPLE_RATE = 16000  # every model here runs at 16 kHz unless it says otherwise


def _open_info(path: Path) -> sf._SoundFileInfo:
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    if path.is_dir():
        raise AudioError(f"{path}: is a directory, expected an audio file")
    try:
        return sf.info(str(path))
    except Exception as exc:  # soundfile raises LibsndfileError/RuntimeError variants
        raise AudioError(f"{path}: not a readable audio file ({exc})") from exc


def to_mono(x: np.ndarray) -> np.ndarray:
    """(T,) or (T, C) -> (T,) float32 by averaging channels."""
    x = np.asarray(x, dtype=np.float32)
    return x.mean(axis=1) if x.ndim == 2 else x


def resample(x: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Band-limited resampling (soxr, high quality) of a mono float32 signal."""
    if orig_sr == target_sr or x.size == 0:
        return x.astype(np.float32, copy=False)
    import librosa

    return librosa.resample(x, orig_sr=orig_sr, target_sr=target_sr, res_type="soxr_hq").astype(
        np.float32
    )


def check_finite(x: np.ndarray, name: str, policy: str = "error") -> np.ndarray:
    """NaN/inf samples: raise (policy 'error') or replace by 0 ('zero')."""
    bad = ~np.isfinite(x)
    if bad.any():
        if policy == "zero":
            x = np.where(bad, 0.0, x).astype(np.float32)
        else:
            raise AudioError(f"{name}: {int(bad.sum())} of {x.size} samples are NaN or inf")
    return x


def load_audio(path: str | Path, sr: int = SAMPLE_RATE, nonfinite: str = "error") -> np.ndarray:
    """Read an audio file as mono float32 at `sr` Hz.

    Raises AudioError naming the file for missing, unreadable, truncated or non-finite input.
    """
    path = Path(path)
    info = _open_info(path)
    try:
        data, file_sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:
        raise AudioError(f"{path}: cannot decode audio ({exc})") from exc
    frames_expected = info.frames
    if frames_expected > 0 and data.shape[0] < frames_expected:
        raise AudioError(
            f"{path}: truncated: header says {frames_expected} frames, decoded {data.shape[0]}"
        )
    x = check_finite(to_mono(data), str(path), nonfinite)
    return resample(x, file_sr, sr)


def as_audio(
    audio: str | Path | np.ndarray,
    sr: int = SAMPLE_RATE,
    input_sr: int | None = None,
    nonfinite: str = "error",
) -> np.ndarray:
    """A path or an array -> mono float32 at `sr`. Arrays are at `input_sr` (default: `sr`)."""
    if isinstance(audio, (str, Path)):
        return load_audio(audio, sr, nonfinite)
    x = np.asarray(audio)
    if x.ndim == 2:
        # accept (T, C) or (C, T) with few channels
        x = x.T if x.shape[0] <= 8 < x.shape[1] else x
        x = to_mono(x)
    elif x.ndim != 1:
        raise AudioError(f"audio array: expected shape (T,) or (T, C), got {x.shape}")
    x = check_finite(x.astype(np.float32, copy=False), "audio array", nonfinite)
    return resample(x, input_sr or sr, sr)


def stream_audio(
    path: str | Path, block_s: float = 60.0, sr: int = SAMPLE_RATE
) -> Iterator[np.ndarray]:
    """Yield mono float32 blocks of about `block_s` seconds at `sr`: bounded memory for long files.

    Each block is resampled on its own; a block boundary costs a negligible edge effect at
    the resampler's filter length (a few ms) which the 30 s Whisper windows never straddle blindly.
    """
    path = Path(path)
    info = _open_info(path)
    blocksize = max(1, int(block_s * info.samplerate))
    try:
        with sf.SoundFile(str(path)) as f:
            while True:
                data = f.read(blocksize, dtype="float32", always_2d=True)
                if data.shape[0] == 0:
                    break
                yield resample(check_finite(to_mono(data), str(path)), info.samplerate, sr)
    except AudioError:
        raise
    except Exception as exc:
        raise AudioError(f"{path}: cannot decode audio ({exc})") from exc
