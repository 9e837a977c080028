"""Word-level timestamps from the cross-attention of the alignment heads, by dynamic time
warping: the algorithm of openai-whisper `timing.py` (find_alignment, merge_punctuations,
add_word_timestamps), written in MLX + NumPy.
"""

from __future__ import annotations

from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from .audio import HOP_LENGTH, SAMPLE_RATE, TOKENS_PER_SECOND
from .model import Whisper
from .tokenizer import Tokenizer

PREPEND = "\"'“¿([{-"
APPEND = "\"'.。,，!！?？:：”)]}、"


@dataclass
class WordTiming:
    word: str
    tokens: list[int]
    start: float
    end: float
    probability: float


def cross_attention_qk(model: Whisper, tokens: mx.array, xa: mx.array):
    """Decoder forward that also returns each layer's pre-softmax cross-attention scores.
    tokens: (1, T); xa: (1, S, C) -> logits (1, T, V), [(1, h, T, S)] per layer."""
    dec = model.decoder
    T = tokens.shape[1]
    x = dec.token_embedding(tokens) + dec.positional_embedding[:T]
    mask = None
    if T > 1:
        mask = mx.triu(mx.full((T, T), -mx.inf, dtype=x.dtype), k=1)
    qks = []
    for block in dec.blocks:
        y, _ = block.attn(block.attn_ln(x), mask=mask)
        x = x + y
        ca = block.cross_attn
        h = block.cross_attn_ln(x)
        q, k, v = ca.query(h), ca.key(xa), ca.value(xa)
        B, _, C = q.shape
        d = C // ca.n_head
        q = q.reshape(B, T, ca.n_head, d).transpose(0, 2, 1, 3)  # (B, h, T, d)
        k = k.reshape(B, -1, ca.n_head, d).transpose(0, 2, 1, 3)  # (B, h, S, d)
        v = v.reshape(B, -1, ca.n_head, d).transpose(0, 2, 1, 3)  # (B, h, S, d)
        qk = (q * d**-0.5) @ k.transpose(0, 1, 3, 2)  # (B, h, T, S)
        qks.append(qk)
        o = mx.softmax(qk, axis=-1, precise=True) @ v
        x = x + ca.out(o.transpose(0, 2, 1, 3).reshape(B, T, C))
        x = x + block.mlp2(nn.gelu(block.mlp1(block.mlp_ln(x))))
    return dec.token_embedding.as_linear(dec.ln(x)), qks


def median_filter(x: np.ndarray, width: int) -> np.ndarray:
    """Median over a sliding window on the last axis, reflect-padded (as openai-whisper)."""
    pad = width // 2
    if x.shape[-1] <= pad:
        return x
    xp = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(pad, pad)], mode="reflect")
    win = np.lib.stride_tricks.sliding_window_view(xp, width, axis=-1)
    return np.sort(win, axis=-1)[..., pad]


def dtw(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Monotonic alignment path through cost matrix x (N tokens, M frames), openai-whisper's
    tie-breaking (diagonal, then up, else left); vectorised along anti-diagonals."""
    N, M = x.shape
    cost = np.full((N + 1, M + 1), np.inf, dtype=np.float32)
    trace = np.full((N + 1, M + 1), -1, dtype=np.int8)
    cost[0, 0] = 0
    for s in range(2, N + M + 1):  # cells (i, j) with i + j = s, 1 <= i <= N, 1 <= j <= M
        i = np.arange(max(1, s - M), min(N, s - 1) + 1)
        j = s - i
        c0, c1, c2 = cost[i - 1, j - 1], cost[i - 1, j], cost[i, j - 1]
        t = np.where((c0 < c1) & (c0 < c2), 0, np.where((c1 < c0) & (c1 < c2), 1, 2))
        c = np.where(t == 0, c0, np.where(t == 1, c1, c2))
        cost[i, j] = x[i - 1, j - 1] + c
        trace[i, j] = t
    trace[0, :] = 2
    trace[:, 0] = 1
    i, j, path = N, M, []
    while i > 0 or j > 0:
        path.append((i - 1, j - 1))
        t = trace[i, j]
        if t == 0:
            i, j = i - 1, j - 1
        elif t == 1:
            i -= 1
        else:
            j -= 1
    path = np.array(path[::-1])
    return path[:, 0], path[:, 1]


def find_alignment(
    model: Whisper,
    tokenizer: Tokenizer,
    text_tokens: list[int],
    audio_features: mx.array,
    num_frames: int,
    medfilt_width: int = 7,
    qk_scale: float = 1.0,
) -> list[WordTiming]:
    """audio_features: the window's encoder output (1, n_audio_ctx, C), reused from decoding."""
    if not text_tokens or not model.alignment_heads:
        return []
    tokens = [*tokenizer.sot_sequence, tokenizer.no_timestamps, *text_tokens, tokenizer.eot]
    logits, qks = cross_attention_qk(model, mx.array([tokens]), audio_features)
    n_sot = len(tokenizer.sot_sequence)
    sampled = np.array(logits[0, n_sot:, : tokenizer.eot].astype(mx.float32))
    sampled = np.exp(sampled - sampled.max(-1, keepdims=True))
    probs = sampled / sampled.sum(-1, keepdims=True)
    text_probs = probs[np.arange(len(text_tokens)), text_tokens]
    w = np.stack(
        [np.array(qks[layer][0, head].astype(mx.float32)) for layer, head in model.alignment_heads]
    )  # (heads, tokens, frames)
    w = w[:, :, : num_frames // 2] * qk_scale
    w = np.exp(w - w.max(-1, keepdims=True))
    w /= w.sum(-1, keepdims=True)
    mean, std = w.mean(-2, keepdims=True), w.std(-2, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):  # std 0 (one token): NaN as in torch
        w = median_filter((w - mean) / std, medfilt_width)
    matrix = w.mean(0)[n_sot:-1]
    text_idx, time_idx = dtw(-matrix)
    words, word_tokens = tokenizer.split_to_word_tokens(text_tokens + [tokenizer.eot])
    if len(word_tokens) <= 1:
        return []
    bounds = np.pad(np.cumsum([len(t) for t in word_tokens[:-1]]), (1, 0))
    jumps = np.pad(np.diff(text_idx), (1, 0), constant_values=1).astype(bool)
    jump_times = time_idx[jumps] / TOKENS_PER_SECOND
    starts, ends = jump_times[bounds[:-1]], jump_times[bounds[1:]]
    word_probs = [float(np.mean(text_probs[i:j])) for i, j in zip(bounds[:-1], bounds[1:])]
    return [
        WordTiming(w_, t, float(s), float(e), p)
        for w_, t, s, e, p in zip(words, word_tokens, starts, ends, word_probs)
    ]


def merge_punctuations(
    alignment: list[WordTiming], prepended: str = PREPEND, appended: str = APPEND
) -> None:
    i, j = len(alignment) - 2, len(alignment) - 1
    while i >= 0:  # prepended punctuation joins the following word
        prev, foll = alignment[i], alignment[j]
        if prev.word.startswith(" ") and prev.word.strip() in prepended:
            foll.word, foll.tokens = prev.word + foll.word, prev.tokens + foll.tokens
            prev.word, prev.tokens = "", []
        else:
            j = i
        i -= 1
    i, j = 0, 1
    while j < len(alignment):  # appended punctuation joins the previous word
        prev, foll = alignment[i], alignment[j]
        if not prev.word.endswith(" ") and foll.word in appended:
            prev.word, prev.tokens = prev.word + foll.word, prev.tokens + foll.tokens
            foll.word, foll.tokens = "", []
        else:
            i = j
        j += 1


def add_word_timestamps(
    segments: list[dict],
    model: Whisper,
    tokenizer: Tokenizer,
    audio_features: mx.array,
    num_frames: int,
    last_speech_timestamp: float,
) -> None:
    """Add `words` [{word, start, end, probability}] to each segment of one window (in place),
    adjusting segment bounds as openai-whisper does."""
    if not segments:
        return
    per_segment = [[t for t in s["tokens"] if t < tokenizer.eot] for s in segments]
    text_tokens = [t for seg in per_segment for t in seg]
    alignment = find_alignment(model, tokenizer, text_tokens, audio_features, num_frames)
    durations = np.array([t.end - t.start for t in alignment])
    durations = durations[durations.nonzero()]
    median = min(0.7, float(np.median(durations))) if len(durations) else 0.0
    max_d = median * 2
    if len(durations):  # truncate long words at sentence boundaries
        for i in range(1, len(alignment)):
            if alignment[i].end - alignment[i].start > max_d:
                if alignment[i].word in ".。!！?？":
                    alignment[i].end = alignment[i].start + max_d
                elif alignment[i - 1].word in ".。!！?？":
                    alignment[i].start = alignment[i].end - max_d
    merge_punctuations(alignment)
    offset = segments[0]["seek"] * HOP_LENGTH / SAMPLE_RATE
    k = 0
    for seg, toks in zip(segments, per_segment):
        saved, words = 0, []
        while k < len(alignment) and saved < len(toks):
            t = alignment[k]
            if t.word:
                words.append(
                    {
                        "word": t.word,
                        "start": round(offset + t.start, 2),
                        "end": round(offset + t.end, 2),
                        "probability": t.probability,
                    }
                )
            saved += len(t.tokens)
            k += 1
        if words:
            if words[0]["end"] - last_speech_timestamp > median * 4 and (
                words[0]["end"] - words[0]["start"] > max_d
                or (len(words) > 1 and words[1]["end"] - words[0]["start"] > max_d * 2)
            ):
                if len(words) > 1 and words[1]["end"] - words[1]["start"] > max_d:
                    boundary = max(words[1]["end"] / 2, words[1]["end"] - max_d)
                    words[0]["end"] = words[1]["start"] = boundary
                words[0]["start"] = max(0, words[0]["end"] - max_d)
            if seg["start"] < words[0]["end"] and seg["start"] - 0.5 > words[0]["start"]:
                words[0]["start"] = max(0, min(words[0]["end"] - median, seg["start"]))
            else:
                seg["start"] = words[0]["start"]
            if seg["end"] > words[-1]["start"] and seg["end"] + 0.5 < words[-1]["end"]:
                words[-1]["end"] = max(words[-1]["start"] + median, seg["end"])
            else:
                seg["end"] = words[-1]["end"]
            last_speech_timestamp = seg["end"]
        seg["words"] = words
