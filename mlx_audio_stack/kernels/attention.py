"""Attention kernels without a mask (kernels/c/attention.c): an encoder's self-attention,
fused, and a decoding step's few query rows over a head-major key/value cache.

Their twin is Whisper's `MultiHeadAttention._attend` (`mx.fast.scaled_dot_product_attention`);
each returns None where it does not apply (GPU, `MAS_GEMV=off`, other dtypes or head widths).
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np

from .dispatch import numpy_view, use_kernels
from .library import library


def attention_(q: mx.array, k: mx.array, v: mx.array, n_head: int) -> mx.array | None:
    """softmax(q k^T / sqrt(d)) v per head for (B, T, C) q and (B, S, C) k, v without a mask,
    fused in the kernels (heads 64 wide): blocks of 48 query rows keep their scores, softmax
    and values in cache, on its threads, and the result overwrites q's buffer (q must be
    fresh). Returns (B, T, C), or None where that path does not apply (GPU, other dtypes or
    head widths, no the kernels, short sequences)."""
    fast = library() if use_kernels(q) else None
    B, T, C = q.shape
    S = k.shape[1]
    if fast is None or C != 64 * n_head or T * S < 1 << 16:
        return None
    if k.dtype != q.dtype or v.dtype != q.dtype:
        return None
    mx.eval(q, k, v)
    qa, ka, va = numpy_view(q), numpy_view(k), numpy_view(v)
    if qa is None or ka is None or va is None:
        return None
    failed = fast.mas_attention(
        qa.ctypes.data, ka.ctypes.data, va.ctypes.data, B, T, S, n_head,
        C, C, C, T * C, S * C, S * C, 64**-0.5,
    )  # fmt: skip
    if failed:
        raise MemoryError("out of memory for the attention's scratch buffers")
    return q


def attention_step(q: mx.array, k, v, n_head: int) -> mx.array | None:
    """A decoding step's attention without a mask: q (B, 1, C) over head-major caches k, v
    (Bk, h, S, 64), or over a `StepCache` (k), B = Bk * R with R <= 16 (the rows of one
    cache: a beam's own self-attention cache, R = 1, or the beams of one audio over its
    cross-attention keys). In the kernels, one (cache, head) per task: each key and value is
    read once for the R rows, and the scores stay in cache; the result overwrites q (q must
    be fresh). Returns (B, 1, C), or None where that path does not apply."""
    fast = library() if use_kernels(q) else None
    B, T, C = q.shape
    if fast is None or T != 1:
        return None
    if isinstance(k, StepCache):
        ka, va, S = k.k_np, k.v_np, k.length
    else:
        if k.dtype != q.dtype or v.dtype != q.dtype or v.shape != k.shape:
            return None
        mx.eval(k, v)
        ka, va, S = numpy_view(k), numpy_view(v), k.shape[2]
        if ka is None or va is None:
            return None
    Bk, H, _, d = ka.shape
    if d != 64 or H != n_head or B % Bk or B // Bk > 16:
        return None
    qa = numpy_view(q)
    if qa is None:
        return None
    failed = fast.mas_attention_step(
        qa.ctypes.data, ka.ctypes.data, va.ctypes.data, Bk, B // Bk, S, H, C,
        ka.strides[1] // 4, d**-0.5,
    )  # fmt: skip
    if failed:
        raise MemoryError("out of memory for the attention's scratch buffers")
    return q


class StepCache:
    """A decoder block's self-attention keys and values for decoding steps on CPU: (B, h, cap,
    d) buffers allocated ahead, each step's key and value written in place at the next
    position, beams reordered in place. MLX would concatenate the whole cache anew every
    step (and gather it for the beam order): a tiny.en beam-5 step with 150 cached tokens
    spent ~1.9 ms in those copies. Reads like the `(k, v)` tuple it replaces: `cache[0]`,
    `cache[1]` are MLX views of the filled part, (B, h, length, d).

    Only for `attention_step`'s CPU path (float32, the kernels loaded): `StepCache.of()` says
    None elsewhere. The buffers are written in place, so the views are valid until the next
    `append` or `reorder`."""

    def __init__(self, k: mx.array, v: mx.array):
        B, H, L, d = k.shape
        self.length = 0
        self._alloc(B, H, d, L + 64)
        self._write(np.asarray(k), np.asarray(v))  # any strides: NumPy copies what it sees

    @classmethod
    def of(cls, kv) -> StepCache | None:
        if isinstance(kv, StepCache):
            return kv
        k, v = kv
        if not use_kernels(k) or library() is None or k.shape[-1] != 64:
            return None
        mx.eval(k, v)
        return cls(k, v)

    def _alloc(self, B: int, H: int, d: int, cap: int) -> None:
        cap = -(-cap // 64) * 64
        kb, vb = mx.zeros((B, H, cap, d)), mx.zeros((B, H, cap, d))
        mx.eval(kb, vb)
        k_np, v_np = np.asarray(memoryview(kb)), np.asarray(memoryview(vb))
        if self.length:
            k_np[:, :, : self.length] = self.k_np[:, :, : self.length]
            v_np[:, :, : self.length] = self.v_np[:, :, : self.length]
        self._k, self._v, self.k_np, self.v_np = kb, vb, k_np, v_np

    def _write(self, k: np.ndarray, v: np.ndarray) -> None:
        """Append (B, h, T, d) keys and values."""
        B, H, T, d = k.shape
        end = self.length + T
        if end > self.k_np.shape[2]:
            self._alloc(B, H, d, 2 * end)
        self.k_np[:, :, self.length : end] = k
        self.v_np[:, :, self.length : end] = v
        self.length = end

    def append(self, k: mx.array, v: mx.array) -> StepCache:
        """Append one step's keys and values, (B, T, C) each."""
        mx.eval(k, v)
        B, T, C = k.shape
        H, d = self.k_np.shape[1], self.k_np.shape[3]
        self._write(*(np.asarray(a).reshape(B, T, H, d).transpose(0, 2, 1, 3) for a in (k, v)))
        return self

    def reorder(self, source: list[int]) -> StepCache:
        """Beam search: row i takes row source[i]'s keys and values."""
        idx = np.asarray(source)
        self.k_np[:, :, : self.length] = self.k_np[idx, :, : self.length]
        self.v_np[:, :, : self.length] = self.v_np[idx, :, : self.length]
        return self

    def __getitem__(self, i: int) -> mx.array:
        return (self._k, self._v)[i][:, :, : self.length]
