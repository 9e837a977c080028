"""Whisper's attention kernels (kernels/c/attention.c), on MLX's CPU backend for float32 with
64-wide heads; their twin and the dispatch are in models/whisper/attention.py:
- the encoder's self-attention, fused: blocks of 48 query rows keep their scores, softmax and
  values in cache, on the kernels' threads;
- a decoding step's few query rows (R <= 16 per cache: a beam's own self-attention cache, or
  the beams of one audio over its cross-attention keys) over a head-major cache: each key and
  value is read once for the R rows.
"""

from __future__ import annotations

import mlx.core as mx

from .dispatch import numpy_view
from .library import library


def fused(q: mx.array, k: mx.array, v: mx.array, n_head: int, length: int | None = None):
    """The fused encoder or decoding-step kernel's result (in q's buffer), or None where
    neither applies. k, v: (B, S, C) (the encoder), or head-major (Bk, h, capacity, d) buffers
    of which the first `length` positions count (None: all)."""
    lib = library()
    B, T, C = q.shape
    if lib is None or C != 64 * n_head or k.dtype != q.dtype or v.dtype != q.dtype:
        return None
    if k.ndim == 3 and T * k.shape[1] >= 1 << 16:  # the encoder: (B, S, C) keys and values
        return _encoder(lib, q, k, v, n_head)
    if T == 1 and k.ndim == 4:
        return _step(lib, q, k, v, n_head, k.shape[2] if length is None else length)
    return None


def _encoder(lib, q, k, v, n_head):
    mx.eval(q, k, v)
    qa, ka, va = numpy_view(q), numpy_view(k), numpy_view(v)
    if qa is None or ka is None or va is None:
        return None
    B, T, C = q.shape
    S = k.shape[1]
    failed = lib.mas_attention(
        qa.ctypes.data, ka.ctypes.data, va.ctypes.data, B, T, S, n_head,
        C, C, C, T * C, S * C, S * C, 64**-0.5,
    )  # fmt: skip
    if failed:
        raise MemoryError("out of memory for the attention's scratch buffers")
    return q


def _step(lib, q, k, v, n_head, S):
    mx.eval(q, k, v)
    ka, va, qa = numpy_view(k), numpy_view(v), numpy_view(q)
    if ka is None or va is None or qa is None or k.shape != v.shape:
        return None
    Bk, H, _, d = ka.shape
    B, _, C = q.shape
    if H != n_head or B % Bk or B // Bk > 16:
        return None
    failed = lib.mas_attention_step(
        qa.ctypes.data, ka.ctypes.data, va.ctypes.data, Bk, B // Bk, S, H, C,
        ka.strides[1] // 4, d**-0.5,
    )  # fmt: skip
    if failed:
        raise MemoryError("out of memory for the attention's scratch buffers")
    return q
