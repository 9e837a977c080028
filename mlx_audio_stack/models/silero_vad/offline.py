"""Whole-file speech probabilities, fast: the front end batched over every chunk at once.

The STFT and the 4 conv blocks see one chunk at a time and carry no state, so chunks go
through them in batches of `BATCH_CHUNKS` (framing by reshapes, an FFT, convs and matmuls in
MLX). Only the LSTM is sequential; its input projection is batched too, and the recurrence
runs as a tight loop over (H,) vectors in numpy, which measured 4x faster on CPU than stepping
MLX for 128-wide ops (per-op overhead dominates); MLX computes the next batch's front end
meanwhile (`mx.async_eval`). The output head is batched again. Results equal chunk-by-chunk
streaming (`VADStream`) and silero's per-chunk loop: context, zero-padding of the last chunk
and state all follow the reference.
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np

from ...errors import AudioError
from .model import SileroVAD, VADBranch

FRAMES_PER_CHUNK = 4  # STFT frames in one chunk (chunk = 4 hops)
BATCH_CHUNKS = 256  # chunks per front-end batch (8 s at 16 kHz): cache-sized, bounded memory


def chunk_blocks(
    audio: np.ndarray, branch: VADBranch, context: np.ndarray | None = None
) -> tuple[np.ndarray, int]:
    """Audio -> hop-sized blocks of the context-padded signal (4N + 1, hop), and N chunks.

    Chunk i (with its context) is blocks 4i .. 4i+4 minus the last block's second half: the
    signal is [ctx zeros (or `context`: the samples before `audio`), audio, zeros up to a
    multiple of the chunk, zeros to a whole block].
    """
    a = branch.args
    n, ctx, hop = a.num_samples, a.context_size_samples, a.hop_length
    n_chunks = -(-audio.size // n)  # ceil
    padded = np.zeros((FRAMES_PER_CHUNK * n_chunks + 1) * hop, dtype=np.float32)
    if context is not None:
        padded[:ctx] = context
    padded[ctx : ctx + audio.size] = audio
    return padded.reshape(-1, hop), n_chunks  # (4N + 1, hop)


def _frontend(branch: VADBranch, blocks: mx.array, n_chunks: int) -> mx.array:
    """Blocks (4N + 1, hop) -> LSTM input gates (N, 4H) for every chunk at once.

    Frame f < 3 of chunk i is blocks (4i + f, 4i + f + 1); frame 3 is block 4i + 3 followed
    by the chunk's right reflect padding (first half of block 4i + 4, mirrored around the
    chunk's last sample), as torch's reflect pad builds it.
    """
    hop = branch.args.hop_length
    half = hop // 2  # == context == reflect pad
    last = blocks[4::4]  # (N, hop): block 4i + 4
    # padded chunk tail: c[n : n + ctx] then c[n + ctx - 2], ..., c[n - 1]
    tail = mx.concatenate([last[:, :half], last[:, half - 2 :: -1], blocks[3:-1:4, -1:]], axis=1)
    first = blocks[:-1].reshape(n_chunks, FRAMES_PER_CHUNK, hop)  # block 4i + f
    second = blocks[1:].reshape(n_chunks, FRAMES_PER_CHUNK, hop)  # block 4i + f + 1
    second = mx.concatenate([second[:, :3], tail[:, None]], axis=1)
    frames = mx.concatenate([first, second], axis=-1)  # (N, 4, filter)
    y = branch.stft.magnitude(frames)  # (N, 4, F)
    return branch.decoder.rnn.input_gates(branch.encode(y))  # (N, 4H)


def lstm_scan(
    gx: np.ndarray, w_hh: np.ndarray, h: np.ndarray | None = None, c: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """LSTM recurrence over precomputed input gates gx (N, 4H); w_hh (4H, H), torch order.

    Returns (all hidden states (N, H), last h (H,), last c (H,)).
    """
    n, four_h = gx.shape
    hd = four_h // 4
    w = np.ascontiguousarray(w_hh.T, dtype=np.float32)  # (H, 4H)
    h = np.zeros(hd, np.float32) if h is None else np.asarray(h, np.float32).reshape(hd)
    c = np.zeros(hd, np.float32) if c is None else np.asarray(c, np.float32).reshape(hd)
    hs = np.empty((n, hd), np.float32)
    g = np.empty(four_h, np.float32)
    for t in range(n):
        np.add(gx[t], h @ w, out=g)
        s = 1.0 / (1.0 + np.exp(-g))  # sigmoid of all gates; the g gate uses tanh below
        c = s[hd : 2 * hd] * c + s[:hd] * np.tanh(g[2 * hd : 3 * hd])
        h = s[3 * hd :] * np.tanh(c)
        hs[t] = h
    return hs, h, c


def branch_probs(branch: VADBranch, audio: np.ndarray) -> np.ndarray:
    """Per-chunk speech probabilities (N,) of mono float32 `audio` at the branch's rate."""
    return _probs_from(branch, audio)[0]


def _probs_from(
    branch: VADBranch,
    audio: np.ndarray,
    context: np.ndarray | None = None,
    h: np.ndarray | None = None,
    c: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """branch_probs continuing a recording: `context` (the previous chunk's last samples) and
    the LSTM state (h, c) come in, (probs, h, c) go out."""
    if audio.size == 0:
        return np.zeros(0, np.float32), h, c
    blocks, n_chunks = chunk_blocks(audio, branch, context)
    w_hh = np.array(branch.decoder.rnn.weight_hh)
    spans = [(s, min(n_chunks, s + BATCH_CHUNKS)) for s in range(0, n_chunks, BATCH_CHUNKS)]

    def gates(span):  # lazily built; evaluated asynchronously
        s, e = span
        g = _frontend(branch, mx.array(blocks[4 * s : 4 * e + 1]), e - s)
        mx.async_eval(g)
        return g

    # the next batch's front end runs in MLX while numpy scans the current one
    hs = []
    pending = gates(spans[0])
    for k in range(len(spans)):
        gx = pending
        if k + 1 < len(spans):
            pending = gates(spans[k + 1])
        out, h, c = lstm_scan(np.array(gx), w_hh, h, c)
        hs.append(out)
    return np.array(branch.decoder.head(mx.array(np.concatenate(hs)))), h, c


def speech_probs(
    model: SileroVAD, audio: np.ndarray, sample_rate: int = 16000, nonfinite: str = "error"
) -> np.ndarray:
    """Speech probability of every chunk (512 samples at 16 kHz, 256 at 8 kHz) of `audio`.

    `audio` is mono float32 at `sample_rate`, which must be one of the model's branches
    (resample other rates first, e.g. with `mlx_audio_stack.audio.as_audio`). The last chunk
    is zero-padded; empty audio gives an empty array. NaN/inf samples raise AudioError
    (`nonfinite="zero"` replaces them by 0 instead).
    """
    from ...audio import check_finite

    branch = model.branch(sample_rate)
    x = np.asarray(audio, dtype=np.float32)
    if x.ndim != 1:
        raise AudioError(f"audio: expected a mono (T,) array, got shape {x.shape}")
    x = check_finite(x, "audio", nonfinite)
    return branch_probs(branch, x)


def file_speech_probs(
    model: SileroVAD,
    path,
    sample_rate: int,
    block_s: float = 60.0,
    nonfinite: str = "error",
) -> tuple[np.ndarray, int]:
    """Speech probabilities of an audio file read block by block (bounded memory, any length):
    the file is resampled to `sample_rate` (a branch) per block, context and LSTM state carry
    over, so at the file's own rate the result equals `speech_probs` on the whole file.
    Returns (probs (N,), samples at `sample_rate`)."""
    from ...audio import stream_audio

    branch = model.branch(sample_rate)
    n = branch.args.num_samples
    ctx = branch.args.context_size_samples
    probs, total, h, c = [], 0, None, None
    context = np.zeros(ctx, np.float32)
    rest = np.zeros(0, np.float32)
    for block in stream_audio(path, block_s=block_s, sr=sample_rate, nonfinite=nonfinite):
        total += block.size
        x = np.concatenate([rest, block]) if rest.size else block
        whole = x.size - x.size % n  # whole chunks now; the remainder waits for the next block
        if whole:
            p, h, c = _probs_from(branch, x[:whole], context, h, c)
            probs.append(p)
            context = x[whole - ctx : whole].copy()
        rest = x[whole:].copy()
    if rest.size:
        probs.append(_probs_from(branch, rest, context, h, c)[0])
    return (np.concatenate(probs) if probs else np.zeros(0, np.float32)), total
