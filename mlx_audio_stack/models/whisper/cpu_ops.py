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


def gelu_(x: mx.array) -> mx.array:
    """Exact (erf) GELU; on CPU in place in `x`'s buffer (x must be fresh) through NumPy with
    A&S 7.1.26 erf (error <= 1.5e-7)."""
    if x.ndim < 2 or x.shape[-2] < 256 or not use_cpu_path(x):
        return nn.gelu(x)  # decoder steps (short sequences): stay lazy, no sync with NumPy
    v = numpy_view(x)
    if v is None:
        return nn.gelu(x)
    fast = _blas.elementwise()
    if fast is not None:  # the same formula in one vectorised pass
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
