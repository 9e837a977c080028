"""Offline MossFormer2 separation of an array or a file: one pass for short input, the
chunked overlap-add path (`stream.StreamingSeparator`) for long input."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...audio import as_audio
from ...errors import AudioError, MasError
from .stream import StreamingSeparator

# one pass up to this length; beyond, windows of CHUNK_S overlapping by OVERLAP_S
ONE_PASS_S = 20.0
CHUNK_S = 8.0
OVERLAP_S = 1.0


def rms_match(sources: np.ndarray, mix: np.ndarray) -> np.ndarray:
    """ClearerVoice's output scaling: each source rescaled to the mixture's RMS."""
    rms_in = float(np.sqrt(np.mean(np.square(mix, dtype=np.float64)))) if mix.size else 0.0
    out = sources.copy()
    for s in range(out.shape[0]):
        r = float(np.sqrt(np.mean(np.square(out[s], dtype=np.float64)))) if out[s].size else 0.0
        if r > 1e-10:
            out[s] *= rms_in / r
    return out


def separate(
    audio: str | Path | np.ndarray,
    model,
    input_sr: int | None = None,
    num_spks: int | None = None,
    chunk_s: float | None = None,
    overlap_s: float = OVERLAP_S,
    normalize: bool = False,
    progress: bool = False,
) -> np.ndarray:
    """Separate a mixture into (S, T) float32 sources at the model's sample rate.

    `audio`: a path (any rate/channels: mixed to mono, resampled) or an array at `input_sr`
    (default: the model's rate). `chunk_s`: window length of the chunked path; by default
    input longer than ONE_PASS_S seconds is chunked with CHUNK_S windows. `normalize`:
    rescale each source to the mixture's RMS as ClearerVoice does.
    """
    if num_spks is not None and num_spks != model.num_spks:
        raise MasError(
            f"num_spks={num_spks}: this model separates {model.num_spks} speakers; "
            f"convert a {num_spks}-speaker checkpoint"
        )
    sr = model.sample_rate
    x = as_audio(audio, sr, input_sr)
    if x.size == 0:  # files are refused by as_audio; an empty array has nothing to separate
        raise AudioError("audio is empty (0 samples): nothing to separate")
    if chunk_s is None and x.size > ONE_PASS_S * sr:
        chunk_s = CHUNK_S
    if chunk_s is None or x.size <= chunk_s * sr:
        import mlx.core as mx

        out = np.array(model(mx.array(x[None]))[0]).T  # (S, T)
    else:
        out = StreamingSeparator(model, chunk_s, overlap_s).run(x, progress=progress)
    return rms_match(out, x) if normalize else out
