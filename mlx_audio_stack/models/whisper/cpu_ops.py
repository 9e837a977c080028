"""Fast paths for MLX's CPU backend, where transcendental element-wise ops are scalar loops.

Measured on the development machine (DESIGN.md): softmax over the encoder's (heads, 1500, 1500)
attention scores took ~230 ms per layer in MLX against ~23 ms in torch, and GELU ~57 ms
against ~1.6 ms; NumPy's vectorised `exp` runs ~10x faster than MLX's here. These helpers
evaluate the MLX array and do the element-wise work in place through a zero-copy NumPy view
of its buffer: with `_gemv.c`'s vectorised softmax and GELU where `_blas` loaded it (one
pass per row or block, on its threads: softmax over (6, 1500, 1500) 10.9 -> 4.1 ms, GELU over
1500 x 1536 9.4 -> 0.9 ms), else with NumPy. On a GPU (Metal/CUDA) the plain MLX ops are
used instead.
"""

from __future__ import annotations

import ctypes
import math
from functools import lru_cache

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from ... import _blas
from ...cpu_ops import numpy_view, parallel_rows, use_cpu_path

# erf(z) = 1 - t(a1 + t(a2 + t(a3 + t(a4 + t a5)))) exp(-z^2), t = 1 / (1 + p z), z >= 0
# (Abramowitz & Stegun 7.1.26, |error| <= 1.5e-7: below float32 resolution of GELU's output)
_P = 0.3275911
_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)
_INV_SQRT2 = 1.0 / math.sqrt(2.0)


# Element-wise work runs over blocks of this many float32 (256 KiB): a block and its
# temporaries stay in L2, so each of the many passes after the first reads cache, not memory.
# (Much smaller blocks lose more to per-call overhead and the GIL than they gain.)
_BLOCK = 1 << 16


def _blocks(fn, v: np.ndarray) -> None:
    """Apply the in-place `fn` to consecutive cache-sized pieces of the contiguous `v`."""
    flat = v.reshape(-1)
    for i in range(0, flat.size, _BLOCK):
        fn(flat[i : i + _BLOCK])


def _softmax_rows(a: np.ndarray) -> None:
    a -= a.max(axis=-1, keepdims=True)
    np.exp(a, out=a)
    a /= a.sum(axis=-1, keepdims=True)


def softmax_(x: mx.array) -> mx.array:
    """Softmax over the last axis, computed in place in `x`'s buffer (x must be fresh)."""
    if not use_cpu_path(x):
        return mx.softmax(x, axis=-1, precise=True)
    a = numpy_view(x)
    if a is None:
        return mx.softmax(x, axis=-1, precise=True)
    rows = a.reshape(-1, a.shape[-1])
    fast = _blas.elementwise()
    if fast is not None:  # one pass per row in L1 instead of NumPy's five over memory
        fast.mas_softmax_rows(rows.ctypes.data, rows.shape[0], rows.shape[1])
    else:
        parallel_rows(_softmax_rows, rows)
    return x


def attention_(q: mx.array, k: mx.array, v: mx.array, n_head: int) -> mx.array | None:
    """softmax(q k^T / sqrt(d)) v per head for (B, T, C) q and (B, S, C) k, v without a mask,
    fused in `_gemv.c` (heads 64 wide): blocks of 48 query rows keep their scores, softmax
    and values in cache, on its threads, and the result overwrites q's buffer (q must be
    fresh). Returns (B, T, C), or None where that path does not apply (GPU, other dtypes or
    head widths, no `_gemv.c`, short sequences)."""
    fast = _blas.elementwise()
    B, T, C = q.shape
    S = k.shape[1]
    if fast is None or C != 64 * n_head or T * S < 1 << 16 or not use_cpu_path(q):
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
    cross-attention keys). In `_gemv.c`, one (cache, head) per task: each key and value is
    read once for the R rows, and the scores stay in cache; the result overwrites q (q must
    be fresh). Returns (B, 1, C), or None where that path does not apply."""
    fast = _blas.elementwise()
    B, T, C = q.shape
    if fast is None or T != 1 or not use_cpu_path(q):
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

    Only for `attention_step`'s CPU path (float32, `_gemv.c` loaded): `StepCache.of()` says
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
        if _blas.elementwise() is None or not use_cpu_path(k) or k.shape[-1] != 64:
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


def layer_norm(x: mx.array, weight: mx.array, bias: mx.array, eps: float) -> mx.array | None:
    """Layer norm over the last axis in one vectorised pass per row on `_gemv.c`'s threads
    (MLX's CPU backend makes separate passes, one thread), or None where that path does not
    apply."""
    fast = _blas.elementwise()
    if fast is None or not use_cpu_path(x) or weight.dtype != x.dtype or bias.dtype != x.dtype:
        return None
    xa, wa, ba = numpy_view(x), numpy_view(weight), numpy_view(bias)
    if xa is None or wa is None or ba is None:
        return None
    y = mx.zeros(x.shape, dtype=x.dtype)
    ya = numpy_view(y)
    cols = x.shape[-1]
    fast.mas_layer_norm(
        xa.ctypes.data, wa.ctypes.data, ba.ctypes.data, ya.ctypes.data, xa.size // cols, cols, eps
    )
    return y


def gelu_(x: mx.array) -> mx.array:
    """Exact (erf) GELU; on CPU in place in `x`'s buffer (x must be fresh) through NumPy with
    A&S 7.1.26 erf (error <= 1.5e-7)."""
    fast = _blas.elementwise()
    if not use_cpu_path(x) or (fast is None and (x.ndim < 2 or x.shape[-2] < 256)):
        return nn.gelu(x)  # decoder steps with NumPy: stay lazy, a sync costs more than erf
    v = numpy_view(x)
    if v is None:
        return nn.gelu(x)
    if fast is not None:  # the same formula in one vectorised pass; at any size: a tiny.en
        # beam-5 step's MLP (5 x 1536) took 453 us with MLX's scalar erf, 263 us this way
        fast.mas_gelu(v.ctypes.data, v.size)
    else:
        parallel_rows(lambda rows: _blocks(_gelu_block, rows), v.reshape(-1, v.shape[-1]))
    return x


def _gelu_block(v: np.ndarray) -> None:
    z = np.abs(v)
    z *= np.float32(_INV_SQRT2)
    t = z * np.float32(_P)
    t += np.float32(1.0)
    np.reciprocal(t, out=t)
    poly = t * np.float32(_A[4])  # Horner: (((a5 t + a4) t + a3) t + a2) t + a1, then * t
    poly += np.float32(_A[3])
    for a in _A[2::-1]:
        poly *= t
        poly += np.float32(a)
    poly *= t
    np.multiply(z, z, out=z)
    np.negative(z, out=z)
    np.exp(z, out=z)
    poly *= z
    poly *= np.float32(0.5)
    poly *= v  # h = 0.5 x (1 - erf(|x| / sqrt 2))
    neg = v < 0
    np.subtract(v, poly, out=v)  # x >= 0: x - h
    np.copyto(v, poly, where=neg)  # x < 0: h


@lru_cache(maxsize=1)
def _sgemv():
    """`cblas_sgemv` of the BLAS that `_blas` loaded for MLX (one thread pool for both), or
    None when none was loaded."""
    from ... import _blas

    if not _blas.loaded:
        return None
    try:
        fn = ctypes.CDLL(_blas.loaded).cblas_sgemv
    except (OSError, AttributeError):
        return None
    c_int, c_float, ptr = ctypes.c_int, ctypes.c_float, ctypes.c_void_p
    fn.restype = None
    fn.argtypes = [c_int, c_int, c_int, c_int, c_float, ptr, c_int, ptr, c_int, c_float, ptr, c_int]
    return fn


def matvec_view(w: mx.array) -> np.ndarray | None:
    """A zero-copy (cols, rows) float32 view of `w` for `matvec`, or None where the fast
    path does not apply (GPU, other dtypes, no BLAS loaded)."""
    if not use_cpu_path(w) or w.ndim != 2 or _sgemv() is None:
        return None
    return numpy_view(w)


def matvec(w: np.ndarray, x: mx.array) -> mx.array:
    """`x @ w` for a few rows `x` (..., cols) with `w` (cols, rows) from `matvec_view`, one
    BLAS gemv per row (meant for one or two rows: each gemv reads all of `w`).

    MLX's CPU matmul hands a single row to `sgemm`, which packs the (C, n_vocab) output
    projection before multiplying: 5.5 ms per tiny.en decoding step here against 2.3-2.6 ms
    for the same BLAS's multithreaded `sgemv`. (Where `_blas` can compile `_gemv.c`, its
    few-row kernels take such products; this is the path where it cannot.)"""
    x = x.astype(mx.float32)
    mx.eval(x)
    cols, rows = w.shape
    xv = np.ascontiguousarray(np.asarray(memoryview(x)).reshape(-1, cols))
    out = np.empty((xv.shape[0], rows), dtype=np.float32)
    gemv, wp = _sgemv(), w.ctypes.data
    for xi, oi in zip(xv, out):  # row-major, transposed: y = w^T x
        gemv(101, 112, cols, rows, 1.0, wp, rows, xi.ctypes.data, 1, 0.0, oi.ctypes.data, 1)
    return mx.array(out).reshape(*x.shape[:-1], rows)
