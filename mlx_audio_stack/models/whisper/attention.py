"""Whisper's attention: one function, `attention`, that runs a CPU kernel where one applies
(`kernels/attention.py`) or else its MLX twin, `attention_mlx`; and the self-attention cache
it reads, `KVCache` (a value, passed in and returned).

The twin is `mx.fast.scaled_dot_product_attention`: what a Mac runs, what `MAS_GEMV=off` runs,
and what runs with a mask (the prompt's causal mask). On the kernels' path, where no fused
kernel applies (a window's first call, no mask: cross-attention over the audio), the scores'
softmax runs in place (`kernels.elementwise.softmax_`) between MLX's two products.
"""

from __future__ import annotations

from typing import NamedTuple

import mlx.core as mx

from ...kernels import attention as kernels
from ...kernels.dispatch import use_kernels
from ...kernels.elementwise import softmax_

CACHE_STEP = 64  # a cache's buffers grow by this many positions at a time


class KVCache(NamedTuple):
    """A decoder block's self-attention keys and values, head-major (B, h, capacity, d), the
    first `length` positions filled. A value: `append` returns the cache with the new
    positions. They are written into the same buffers while there is room (MLX updates a
    buffer that nothing else holds in place: a decoding step copies its own position, not the
    whole cache, as concatenating would); an older value still reads its own `length`
    positions, which no later append changes."""

    keys: mx.array
    values: mx.array
    length: int

    @classmethod
    def of(cls, k: mx.array, v: mx.array) -> KVCache:
        """A cache holding (B, h, T, d) keys and values, with room for CACHE_STEP more."""
        return cls(k[:, :, :0], v[:, :, :0], 0).append(k, v)

    def append(self, k: mx.array, v: mx.array) -> KVCache:
        """The cache with (B, h, T, d) keys and values added after its `length` positions."""
        B, h, T, d = k.shape
        end = self.length + T
        keys, values = self.keys, self.values
        if end > keys.shape[2]:  # grow: a new buffer, the filled part copied once
            cap = (end // CACHE_STEP + 1) * CACHE_STEP
            pad = mx.zeros((B, h, cap - self.length, d), k.dtype)
            keys = mx.concatenate([keys[:, :, : self.length], pad], axis=2)
            values = mx.concatenate([values[:, :, : self.length], pad], axis=2)
        keys[:, :, self.length : end] = k
        values[:, :, self.length : end] = v
        return KVCache(keys, values, end)

    def filled(self) -> tuple[mx.array, mx.array]:
        """The (B, h, length, d) keys and values."""
        return self.keys[:, :, : self.length], self.values[:, :, : self.length]

    def take(self, rows: mx.array) -> KVCache:
        """Beam search: row i of the result is row rows[i] of this cache."""
        return KVCache(self.keys[rows], self.values[rows], self.length)

    def repeat(self, n: int) -> KVCache:
        """Each row n times (rows that start from one prompt)."""
        return KVCache(*(mx.repeat(a, n, axis=0) for a in (self.keys, self.values)), self.length)


def _heads(x: mx.array, n_head: int) -> mx.array:
    """(B, T, C) -> (B, h, T, d), a view."""
    B, T, C = x.shape
    return x.reshape(B, T, n_head, C // n_head).transpose(0, 2, 1, 3)


def attention(q: mx.array, k, v, n_head: int, mask: mx.array | None = None) -> mx.array:
    """softmax(q k^T / sqrt(d) + mask) v per head -> (B, T, C) for q (B, T, C) over keys and
    values given as (B, S, C) (the encoder's self-attention), as a head-major (Bk, h, S, d)
    pair (cross-attention: B = Bk * g, g rows of one audio sharing its keys), or as a
    `KVCache` (k; v None). q must be fresh: a kernel may overwrite its buffer."""
    if isinstance(k, KVCache):
        cache, (k, v) = k, k.filled()
    else:
        cache = None
    if mask is None and use_kernels(q):
        if cache is not None:  # the whole buffers: a kernel reads `length` positions
            o = kernels.fused(q, cache.keys, cache.values, n_head, cache.length)
        else:
            o = kernels.fused(q, k, v, n_head)
        if o is not None:
            return o
    if k.ndim == 3:
        k, v = _heads(k, n_head), _heads(v, n_head)
    return attention_mlx(_heads(q, n_head), k, v, mask, softmax=_softmax(q))


def _softmax(q: mx.array):
    """The scores' softmax: in place (elementwise.softmax_) on the kernels' path, else None."""
    return softmax_ if use_kernels(q) else None


def attention_mlx(q: mx.array, k: mx.array, v: mx.array, mask: mx.array | None,
                  softmax=None) -> mx.array:  # fmt: skip
    """The twin: q (B, h, T, d); k, v (Bk, h, S, d), B = Bk * g -> (B, T, h * d). With
    `softmax` (and no mask), the scores are formed by MLX and `softmax(scores)` normalises
    them: MLX's CPU exp is scalar, an in-place kernel is not (a tiny.en beam-5 step with the
    cache 150 long: 14.0 -> 12.2 ms even through NumPy)."""
    B, h, T, d = q.shape
    Bk, S = k.shape[0], k.shape[2]
    g = B // Bk
    if g > 1:  # rows of one audio: their queries share the audio's cross-attention keys
        q = q.reshape(Bk, g, h, T, d).transpose(0, 2, 1, 3, 4).reshape(Bk, h, g * T, d)
    if softmax is not None and mask is None and q.shape[2] * S >= 1 << 10:
        o = softmax((q * d**-0.5) @ k.transpose(0, 1, 3, 2)) @ v
    else:
        o = mx.fast.scaled_dot_product_attention(q, k, v, scale=d**-0.5, mask=mask)
    if g > 1:  # (Bk, h, g * T, d) -> (B, h, T, d)
        o = o.reshape(Bk, h, g, T, d).transpose(0, 2, 1, 3, 4).reshape(B, h, T, d)
    return o.transpose(0, 2, 1, 3).reshape(B, T, h * d)
