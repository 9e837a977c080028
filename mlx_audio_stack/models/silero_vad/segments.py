"""Speech segments from per-chunk probabilities, with silero's `get_speech_timestamps` options
and semantics (hysteresis thresholds, minimum speech/silence, padding, maximum length split
at the longest silence), so the same probabilities give the same segments."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ...errors import AudioError, MasError
from .model import KNOWN_BRANCHES, SileroVAD


class VADOptionError(MasError, ValueError):
    """A segment-extraction option is out of range."""


def _validate(
    threshold: float,
    neg_threshold: float | None,
    min_speech_duration_ms: float,
    min_silence_duration_ms: float,
    speech_pad_ms: float,
    max_speech_duration_s: float,
) -> None:
    if not 0.0 <= threshold <= 1.0:
        raise VADOptionError(f"threshold: expected a probability in [0, 1], got {threshold}")
    if neg_threshold is not None and not 0.0 <= neg_threshold <= 1.0:
        raise VADOptionError(
            f"neg_threshold: expected a probability in [0, 1], got {neg_threshold}"
        )
    for name, v in (
        ("min_speech_duration_ms", min_speech_duration_ms),
        ("min_silence_duration_ms", min_silence_duration_ms),
        ("speech_pad_ms", speech_pad_ms),
    ):
        if v < 0:
            raise VADOptionError(f"{name}: expected >= 0, got {v}")
    if not max_speech_duration_s > 0:
        raise VADOptionError(f"max_speech_duration_s: expected > 0, got {max_speech_duration_s}")


def timestamps_from_probs(
    probs,
    sampling_rate: int = 16000,
    threshold: float = 0.5,
    min_speech_duration_ms: float = 250,
    max_speech_duration_s: float = math.inf,
    min_silence_duration_ms: float = 100,
    speech_pad_ms: float = 30,
    return_seconds: bool = False,
    time_resolution: int = 1,
    neg_threshold: float | None = None,
    min_silence_at_max_speech: float = 98,
    use_max_poss_sil_at_max_speech: bool = True,
    audio_length_samples: int | None = None,
) -> list[dict]:
    """Per-chunk probabilities -> [{"start", "end"}] in samples (or seconds).

    Options as silero's `get_speech_timestamps`: speech starts at a chunk >= `threshold` and
    ends after `min_silence_duration_ms` below `neg_threshold` (default threshold - 0.15);
    shorter than `min_speech_duration_ms` is dropped; segments over `max_speech_duration_s`
    are cut at their longest silence (or just before the limit); `speech_pad_ms` on each side.
    """
    _validate(
        threshold,
        neg_threshold,
        min_speech_duration_ms,
        min_silence_duration_ms,
        speech_pad_ms,
        max_speech_duration_s,
    )
    win = 512 if sampling_rate == 16000 else 256
    probs = [float(p) for p in np.asarray(probs, dtype=np.float64).reshape(-1)]
    total = len(probs) * win if audio_length_samples is None else audio_length_samples
    min_speech = sampling_rate * min_speech_duration_ms / 1000
    pad = sampling_rate * speech_pad_ms / 1000
    max_speech = sampling_rate * max_speech_duration_s - win - 2 * pad
    min_silence = sampling_rate * min_silence_duration_ms / 1000
    min_silence_at_max = sampling_rate * min_silence_at_max_speech / 1000
    if neg_threshold is None:
        neg_threshold = max(threshold - 0.15, 0.01)

    segments: list[dict] = []
    cur: dict = {}
    triggered = False
    temp_end = prev_end = next_start = 0  # 0 means "unset", as in the reference
    silences: list[tuple[int, int]] = []  # (start, duration) candidates for a max-length cut

    def close(end: int) -> None:
        nonlocal cur
        cur["end"] = end
        segments.append(cur)
        cur = {}

    for i, p in enumerate(probs):
        t = win * i
        speech = p >= threshold
        if speech and temp_end:  # speech resumes after a tentative end
            if t - temp_end > min_silence_at_max:
                silences.append((temp_end, t - temp_end))
            temp_end = 0
            if next_start < prev_end:
                next_start = t
        if speech and not triggered:
            triggered = True
            cur["start"] = t
            continue
        if triggered and t - cur["start"] > max_speech:
            if use_max_poss_sil_at_max_speech and silences:
                prev_end, dur = max(silences, key=lambda s: s[1])  # first longest silence
                close(prev_end)
                next_start = prev_end + dur
                if next_start < prev_end + t:
                    cur["start"] = next_start
                else:
                    triggered = False
                prev_end = next_start = temp_end = 0
                silences = []
            elif prev_end:
                close(prev_end)
                if next_start < prev_end:
                    triggered = False
                else:
                    cur["start"] = next_start
                prev_end = next_start = temp_end = 0
                silences = []
            else:
                close(t)
                prev_end = next_start = temp_end = 0
                triggered = False
                silences = []
                continue
        if p < neg_threshold and triggered:
            if not temp_end:
                temp_end = t
            silence = t - temp_end
            if not use_max_poss_sil_at_max_speech and silence > min_silence_at_max:
                prev_end = temp_end
            if silence < min_silence:
                continue
            cur["end"] = temp_end
            if cur["end"] - cur["start"] > min_speech:
                segments.append(cur)
            cur = {}
            prev_end = next_start = temp_end = 0
            triggered = False
            silences = []

    if cur and total - cur["start"] > min_speech:
        close(total)
    _pad(segments, pad, total)
    if return_seconds:
        length_s = total / sampling_rate
        for s in segments:
            s["start"] = max(round(s["start"] / sampling_rate, time_resolution), 0)
            s["end"] = min(round(s["end"] / sampling_rate, time_resolution), length_s)
    return segments


def _pad(segments: list[dict], pad: float, total: int) -> None:
    """Pad each segment by `pad` samples; neighbours closer than 2 pads split the gap."""
    for i, s in enumerate(segments):
        if i == 0:
            s["start"] = int(max(0, s["start"] - pad))
        if i != len(segments) - 1:
            nxt = segments[i + 1]
            gap = nxt["start"] - s["end"]
            if gap < 2 * pad:
                s["end"] += int(gap // 2)
                nxt["start"] = int(max(0, nxt["start"] - gap // 2))
            else:
                s["end"] = int(min(total, s["end"] + pad))
                nxt["start"] = int(max(0, nxt["start"] - pad))
        else:
            s["end"] = int(min(total, s["end"] + pad))


def model_rate(sampling_rate: int, model: SileroVAD) -> int:
    """The branch that audio at `sampling_rate` runs on: its own rate if the model has it,
    else 16 kHz (else the model's only branch)."""
    if sampling_rate in model.sample_rates:
        return sampling_rate
    return 16000 if 16000 in model.sample_rates else model.sample_rates[0]


def speech_timestamps(
    audio,
    model: SileroVAD,
    sampling_rate: int = 16000,
    return_seconds: bool = False,
    time_resolution: int = 1,
    nonfinite: str = "error",
    model_sample_rate: int | None = None,
    **options,
) -> list[dict]:
    """Speech segments [{"start", "end"}] of a file path or mono array, like silero's
    `get_speech_timestamps` (same options: threshold, neg_threshold, min_speech_duration_ms,
    min_silence_duration_ms, speech_pad_ms, max_speech_duration_s, ...).

    An array is at `sampling_rate`; a path is read at its own rate. Audio at 16 or 8 kHz runs
    on that branch; any other rate is resampled to 16 kHz (soxr) and the sample positions
    returned are mapped back to the input rate (`model_sample_rate` forces the branch, e.g.
    8000 to run 16 kHz audio on the 8 kHz branch). Empty audio gives [].
    """
    from ...audio import as_audio, audio_info, is_long, load_audio
    from .offline import file_speech_probs, speech_probs

    info = None
    if isinstance(audio, (str, Path)):
        info = audio_info(audio)  # regular, readable, not cut short, not empty
        sampling_rate = info.samplerate
    elif sampling_rate <= 0:
        raise AudioError(f"sampling_rate: expected > 0 Hz, got {sampling_rate}")
    sr = model_sample_rate or model_rate(sampling_rate, model)
    if sr not in KNOWN_BRANCHES:
        raise AudioError(f"model_sample_rate: {sr} Hz is not a Silero VAD branch (16000 or 8000)")
    model.branch(sr)  # clear error when these weights lack that branch
    if info is not None and is_long(info):  # block by block: bounded memory at any length
        probs, n_samples = file_speech_probs(model, audio, sr, nonfinite=nonfinite)
    else:
        x = (
            load_audio(audio, sr, nonfinite)
            if info is not None
            else as_audio(audio, sr, sampling_rate, nonfinite)
        )
        probs, n_samples = speech_probs(model, x, sr), x.size
    segs = timestamps_from_probs(
        probs,
        sr,
        return_seconds=return_seconds,
        time_resolution=time_resolution,
        audio_length_samples=n_samples,
        **options,
    )
    if not return_seconds and sr != sampling_rate:
        scale = sampling_rate / sr
        segs = [
            {"start": int(round(s["start"] * scale)), "end": int(round(s["end"] * scale))}
            for s in segs
        ]
    return segs
