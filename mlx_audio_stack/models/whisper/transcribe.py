"""Long-form transcription: 30 s windows, seeking on timestamp tokens, temperature fallback,
prompting with previous text. Same algorithm and defaults as openai-whisper `transcribe()`.
"""

from __future__ import annotations

import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ...formats import timestamp
from .audio import FRAMES_PER_SECOND, HOP_LENGTH, N_FRAMES, SAMPLE_RATE, pad_or_trim
from .decoding import DecodingOptions, DecodingResult, DecodingTask, detect_language
from .load import load_cached
from .mel_source import MelSource
from .model import Whisper
from .timing import add_word_timestamps
from .tokenizer import LANGUAGES, Tokenizer, load_tokenizer

DECODE_FIELDS = {f.name for f in fields(DecodingOptions)}


def get_tokenizer(
    model: Whisper, language: str | None = None, task: str | None = None
) -> Tokenizer:
    return load_tokenizer(model.tokenizer_path, model.dims.n_vocab, language, task)


def _decode_with_fallback(
    model,
    tokenizer,
    mel_segment,
    temperatures,
    options: dict,
    compression_ratio_threshold,
    logprob_threshold,
    no_speech_threshold,
    return_layers: bool = False,
) -> tuple[DecodingResult, list | None]:
    result, layers = None, None
    if return_layers:  # the extra heads read every block's output of this same pass
        features, layers = model.embed_audio(mel_segment[None], return_layers=True)
    else:
        features = model.embed_audio(mel_segment[None])  # encode once for every temperature
    for t in temperatures:
        kw = dict(options)
        if t > 0:
            kw.pop("beam_size", None)
            kw.pop("patience", None)
        else:
            kw.pop("best_of", None)
        result = DecodingTask(model, tokenizer, DecodingOptions(**kw, temperature=t)).run(
            audio_features=features
        )[0]
        needs_fallback = False
        if (
            compression_ratio_threshold is not None
            and result.compression_ratio > compression_ratio_threshold
        ):
            needs_fallback = True  # too repetitive
        if logprob_threshold is not None and result.avg_logprob < logprob_threshold:
            needs_fallback = True  # average log probability too low
        if (
            no_speech_threshold is not None
            and result.no_speech_prob > no_speech_threshold
            and logprob_threshold is not None
            and result.avg_logprob < logprob_threshold
        ):
            needs_fallback = False  # silence: accept
        if not needs_fallback:
            break
    return result, layers


def transcribe(
    audio: str | Path | np.ndarray,
    model: str | Path | Whisper = None,
    *,
    verbose: bool | None = None,
    temperature: float | tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0),
    compression_ratio_threshold: float | None = 2.4,
    logprob_threshold: float | None = -1.0,
    no_speech_threshold: float | None = 0.6,
    condition_on_previous_text: bool = True,
    initial_prompt: str | None = None,
    word_timestamps: bool = False,
    skip_silence: bool = True,
    dtype: str | None = None,
    progress: bool = False,
    heads: Any = None,
    **decode_options: Any,
) -> dict[str, Any]:
    """Transcribe a file or a 16 kHz float32 array.

    `model` is a converted weights folder (default `weights/whisper-tiny.en`) or a loaded model.
    `decode_options` are `DecodingOptions` fields: language, task ("transcribe"/"translate"),
    beam_size, patience, length_penalty, best_of, suppress_tokens, without_timestamps...
    Returns {"text", "segments": [{id, seek, start, end, text, tokens, temperature,
    avg_logprob, compression_ratio, no_speech_prob[, words]}], "language"}. `word_timestamps`
    adds per-word times from the alignment heads in the weights' config.

    `skip_silence`: a 30 s window whose log-mel is constant (digital silence, or nothing above
    Whisper's own floor of the recording's loudest frame - 80 dB) is skipped without decoding,
    as the no-speech rule skips a window: the model sees the same featureless input for every
    such window and tiny/base answer it with invented words ("you"). Cost: one max/min over
    the window's (3000, n_mels) frames. openai-whisper has no such rule (False: its output).

    `heads` (a heads folder or `WhisperHeads` trained on this encoder): every segment gets
    "heads": {task: {"label"|"labels", "probs"[, "frame_labels"]}} computed from the block
    outputs of the encoder pass that decoded it (no second encoder pass).
    """
    from ...paths import weights_dir

    unknown = set(decode_options) - DECODE_FIELDS
    if unknown:
        raise TypeError(f"transcribe() got unknown options {sorted(unknown)}")
    if model is None:
        model = weights_dir() / "whisper-tiny.en"
    if not isinstance(model, Whisper):
        model = load_cached(str(model), dtype)
    if heads is not None:
        from ...heads.infer import as_heads, check_encoder, pooled_window, segment_heads

        heads = as_heads(heads)
        check_encoder(heads, model.dims.n_audio_layer, model.dims.n_audio_state, "transcribe")
    mels = MelSource.from_input(audio, model.dims.n_mels)
    content_frames = mels.content_frames
    tokenizer = get_tokenizer(model)
    language = decode_options.get("language")
    if language is None:
        if not model.is_multilingual:
            language = "en"
        else:
            seg = pad_or_trim(mels.window(0, N_FRAMES), N_FRAMES)
            _, probs = detect_language(model, model.embed_audio(seg[None]), tokenizer)
            language = max(probs[0], key=probs[0].get)
            if verbose is not None:
                print(f"Detected language: {language}", file=sys.stderr)
    elif language not in LANGUAGES:
        raise ValueError(f"unknown language {language!r}; expected a code like 'en', 'de'")
    decode_options["language"] = language
    task = decode_options.get("task", "transcribe")
    tokenizer = tokenizer.with_options(language, task)
    temperatures = [temperature] if isinstance(temperature, (int, float)) else list(temperature)

    input_stride = N_FRAMES // model.dims.n_audio_ctx  # mel frames per output token: 2
    time_precision = input_stride * HOP_LENGTH / SAMPLE_RATE  # 0.02 s per timestamp token
    all_tokens: list[int] = []
    all_segments: list[dict] = []
    prompt_reset_since = 0
    initial_prompt_tokens = []
    if initial_prompt is not None:
        initial_prompt_tokens = tokenizer.encode(" " + initial_prompt.strip())
        all_tokens.extend(initial_prompt_tokens)

    seek, last_speech_timestamp = 0, 0.0
    with tqdm(total=content_frames, unit="frames", disable=not progress) as pbar:
        while seek < content_frames:
            time_offset = float(seek * HOP_LENGTH / SAMPLE_RATE)
            segment_size = min(N_FRAMES, content_frames - seek)
            frames = mels.window(seek, segment_size)
            if skip_silence and (frames.max() - frames.min()).item() == 0.0:
                pbar.update(segment_size)  # featureless window: nothing to transcribe
                seek += segment_size
                continue
            mel_segment = pad_or_trim(frames, N_FRAMES)
            segment_duration = segment_size * HOP_LENGTH / SAMPLE_RATE
            decode_options["prompt"] = all_tokens[prompt_reset_since:]
            result, layers = _decode_with_fallback(
                model,
                tokenizer,
                mel_segment,
                temperatures,
                decode_options,
                compression_ratio_threshold,
                logprob_threshold,
                no_speech_threshold,
                return_layers=heads is not None,
            )
            tokens = np.array(result.tokens, dtype=np.int64)
            if no_speech_threshold is not None:
                should_skip = result.no_speech_prob > no_speech_threshold
                if logprob_threshold is not None and result.avg_logprob > logprob_threshold:
                    should_skip = False  # confident text despite the no-speech probability
                if should_skip:
                    pbar.update(segment_size)
                    seek += segment_size
                    continue
            previous_seek = seek
            segments, seek, single_ending = _split_segments(
                tokens,
                tokenizer,
                result,
                seek,
                segment_size,
                segment_duration,
                time_offset,
                time_precision,
                input_stride,
            )
            if word_timestamps:
                features = result.audio_features[None]  # the window's encoding, reused
                add_word_timestamps(
                    segments, model, tokenizer, features, segment_size, last_speech_timestamp
                )
                ends = [w["end"] for s in segments for w in s["words"]]
                if not single_ending and ends and ends[-1] > time_offset:
                    seek = round(ends[-1] * FRAMES_PER_SECOND)  # resume after the last word
                if ends:
                    last_speech_timestamp = ends[-1]
            if heads is not None:
                pooled = pooled_window(layers, heads.args.pool, -(-segment_size // input_stride))
                for s in segments:
                    s["heads"] = segment_heads(heads, pooled, time_offset, s["start"], s["end"])
            for s in segments:  # instantaneous or empty segments are cleared
                if s["start"] == s["end"] or s["text"].strip() == "":
                    s["text"], s["tokens"] = "", []
                    if word_timestamps:
                        s["words"] = []
            if verbose:
                for s in segments:
                    print(f"[{timestamp(s['start'])} --> {timestamp(s['end'])}] {s['text']}")
            all_segments.extend(
                {"id": i, **s} for i, s in enumerate(segments, start=len(all_segments))
            )
            all_tokens.extend(t for s in segments for t in s["tokens"])
            if not condition_on_previous_text or result.temperature > 0.5:
                prompt_reset_since = len(all_tokens)
            pbar.update(min(content_frames, seek) - previous_seek)
    return {
        "text": tokenizer.decode(all_tokens[len(initial_prompt_tokens) :]),
        "segments": all_segments,
        "language": language,
    }


def _split_segments(
    tokens,
    tokenizer,
    result,
    seek,
    segment_size,
    segment_duration,
    time_offset,
    time_precision,
    input_stride,
) -> tuple[list[dict], int, bool]:
    """Cut a window's tokens into segments at timestamp pairs; return them, the next seek and
    whether the window ended on a single timestamp (no speech after it)."""
    tb = tokenizer.timestamp_begin

    def new_segment(start, end, toks):
        toks = [int(t) for t in toks]
        return {
            "seek": seek,
            "start": start,
            "end": end,
            "text": tokenizer.decode([t for t in toks if t < tokenizer.eot]),
            "tokens": toks,
            "temperature": result.temperature,
            "avg_logprob": result.avg_logprob,
            "compression_ratio": result.compression_ratio,
            "no_speech_prob": result.no_speech_prob,
        }

    is_ts = tokens >= tb
    single_timestamp_ending = is_ts[-2:].tolist() == [False, True]
    consecutive = (np.where(is_ts[:-1] & is_ts[1:])[0] + 1).tolist()
    segments = []
    if consecutive:
        slices = consecutive + ([len(tokens)] if single_timestamp_ending else [])
        last = 0
        for cur in slices:
            part = tokens[last:cur]
            segments.append(
                new_segment(
                    time_offset + (part[0] - tb) * time_precision,
                    time_offset + (part[-1] - tb) * time_precision,
                    part,
                )
            )
            last = cur
        if single_timestamp_ending:
            seek += segment_size  # no speech after the last timestamp
        else:
            seek += int(tokens[last - 1] - tb) * input_stride  # resume at the last timestamp
    else:
        duration = segment_duration
        stamps = tokens[is_ts]
        if len(stamps) > 0 and stamps[-1] != tb:
            duration = (stamps[-1] - tb) * time_precision
        segments.append(new_segment(time_offset, time_offset + duration, tokens))
        seek += segment_size
    for s in segments:
        s["start"], s["end"] = float(s["start"]), float(s["end"])
    return segments, seek, single_timestamp_ending
