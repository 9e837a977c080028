"""Audio loading: any file soundfile reads (wav/flac/ogg/mp3), any rate and channel count,
to mono float32 at the rate a model wants; plus streamed block reading for long files."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf

from .audio_headers import container_truncation, tail_missing
from .errors import AudioError

SAMPLE_RATE = 16000  # every model here runs at 16 kHz unless it says otherwise


MAX_ABS = 1e5  # larger samples are refused: float audio lives in [-1, 1] (int16 values: 32768)


def check_regular_file(path: str | Path) -> os.stat_result:
    """stat() a path that must be a readable regular file, without opening it (opening a FIFO
    blocks until a writer appears). Raises AudioError naming the file and what it is."""
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise AudioError(f"{path}: no such file") from None
    except OSError as exc:
        raise AudioError(f"{path}: cannot access ({exc.strerror})") from None
    if stat.S_ISDIR(st.st_mode):
        raise AudioError(f"{path}: is a directory, expected an audio file")
    if not stat.S_ISREG(st.st_mode):
        kind = (
            "a FIFO"
            if stat.S_ISFIFO(st.st_mode)
            else "a socket"
            if stat.S_ISSOCK(st.st_mode)
            else "a device"
            if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)
            else "not a regular file"
        )
        raise AudioError(f"{path}: is {kind}; expected a regular audio file")
    if not os.access(path, os.R_OK):
        raise AudioError(f"{path}: permission denied (not readable)")
    return st


def wav_truncation(path: str | Path, size: int) -> str | None:
    """A message when the file's container header (WAV, RF64, W64, AIFF, AU; Ogg's end page)
    declares more audio than the file holds (libsndfile silently shrinks the frame count), else
    None. Kept under its first name; see `audio_headers.container_truncation`."""
    return container_truncation(path, size)


def audio_info(path: str | Path, allow_empty: bool = False) -> sf._SoundFileInfo:
    """Header of an audio file after the checks every reader needs: a readable regular file
    (FIFOs, devices, folders refused before opening), a file not cut short (container
    header sizes, FLAC's last frames: `audio_headers`), and (unless
    `allow_empty`) at least one sample. Raises AudioError naming the file and the problem."""
    path = Path(path)
    st = check_regular_file(path)
    try:
        info = sf.info(str(path))
    except Exception as exc:  # soundfile raises LibsndfileError/RuntimeError variants
        raise AudioError(f"{path}: not a readable audio file ({exc})") from exc
    cut = container_truncation(path, st.st_size) or tail_missing(path, info)
    if cut:
        raise AudioError(f"{path}: {cut}")
    if info.frames == 0 and not allow_empty:
        raise AudioError(f"{path}: empty: the file holds no audio (0 samples)")
    return info


_open_info = audio_info  # old private name, still used by callers

STREAM_SECONDS = 15 * 60  # longer inputs are read block by block (bounded memory)
STREAM_SAMPLES = 1 << 24  # so are files with more samples (all channels): 64 MB as float32
BLOCK_SAMPLES = 1 << 22  # at most this many samples (all channels) per streamed block: 16 MB


def is_long(info: sf._SoundFileInfo) -> bool:
    """Whether a file should be streamed rather than read whole (duration or decoded size)."""
    return info.frames / info.samplerate > STREAM_SECONDS or info.frames * info.channels > (
        STREAM_SAMPLES
    )


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
    """NaN/inf samples: raise (policy 'error') or replace by 0 ('zero'). Samples beyond
    +-MAX_ABS (finite but absurd, e.g. audio scaled by 1e30) always raise: the models'
    power spectra would overflow to inf and their outputs to NaN."""
    bad = ~np.isfinite(x)
    if bad.any():
        if policy == "zero":
            x = np.where(bad, 0.0, x).astype(np.float32)
        else:
            raise AudioError(f"{name}: {int(bad.sum())} of {x.size} samples are NaN or inf")
    if x.size:
        peak = float(np.max(np.abs(x)))
        if peak > MAX_ABS:
            raise AudioError(
                f"{name}: sample magnitude {peak:.3g} is out of range (expected at most "
                f"{MAX_ABS:g}; float audio is in [-1, 1])"
            )
    return x


def load_audio(path: str | Path, sr: int = SAMPLE_RATE, nonfinite: str = "error") -> np.ndarray:
    """Read an audio file as mono float32 at `sr` Hz.

    Raises AudioError naming the file for missing, unreadable, truncated or non-finite input.
    """
    path = Path(path)
    info = audio_info(path)
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


def stream_length(info: sf._SoundFileInfo, sr: int = SAMPLE_RATE) -> int:
    """How many samples `stream_audio` (and `load_audio`) give for a file at `sr`: the
    header's frame count resampled, rounded up."""
    return -(-info.frames * sr // info.samplerate)


def stream_audio(
    path: str | Path, block_s: float = 60.0, sr: int = SAMPLE_RATE, nonfinite: str = "error"
) -> Iterator[np.ndarray]:
    """Yield mono float32 blocks of about `block_s` seconds at `sr`: bounded memory for long files.

    The file is checked (`audio_info`) when this is called, before the first block. Resampling
    runs as one continuous soxr stream (same quality as `resample`), so the concatenated
    blocks equal `load_audio` of the whole file.
    """
    return open_stream(path, block_s, sr, nonfinite)[1]


def open_stream(
    path: str | Path, block_s: float = 60.0, sr: int = SAMPLE_RATE, nonfinite: str = "error"
) -> tuple[sf._SoundFileInfo, Iterator[np.ndarray]]:
    """`stream_audio` with the header it checked: (info, blocks), for a caller that also
    needs the length (one header read)."""
    path = Path(path)
    info = audio_info(path)
    frames = min(int(block_s * info.samplerate), BLOCK_SAMPLES // info.channels)
    return info, _blocks(path, info, max(1, frames), sr, nonfinite)


def _blocks(path: Path, info, blocksize: int, sr: int, nonfinite: str) -> Iterator[np.ndarray]:
    import soxr

    rs = (
        None
        if info.samplerate == sr
        else soxr.ResampleStream(info.samplerate, sr, 1, "float32", "HQ")
    )
    done = out = 0
    try:
        with sf.SoundFile(str(path)) as f:
            while True:
                data = f.read(blocksize, dtype="float32", always_2d=True)
                if data.shape[0] == 0:
                    break
                done += data.shape[0]
                x = check_finite(to_mono(data), str(path), nonfinite)
                if rs is not None:
                    x = rs.resample_chunk(x)
                out += x.size
                if x.size:
                    yield x
    except AudioError:
        raise
    except Exception as exc:
        raise AudioError(f"{path}: cannot decode audio ({exc})") from exc
    if done < info.frames:
        raise AudioError(f"{path}: truncated: header says {info.frames} frames, decoded {done}")
    if rs is not None:  # the resampler's tail, zero-padded to librosa's length ceil(n * ratio)
        tail = rs.resample_chunk(np.zeros(0, np.float32), last=True)
        want = -(-done * sr // info.samplerate) - out
        tail = np.pad(tail, (0, max(0, want - tail.size)))[: max(0, want)]
        if tail.size:
            yield tail.astype(np.float32, copy=False)
