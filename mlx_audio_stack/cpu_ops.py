"""In-place NumPy fast paths for MLX's CPU backend, shared by the models.

MLX's CPU backend runs element-wise ops on one thread, and its transcendental ops (exp, erf)
as scalar loops. Where that dominates, a model evaluates the MLX array and does the
element-wise work in place in its buffer, through a zero-copy NumPy view, on all cores (NumPy's
ufuncs are vectorised and release the GIL). On a GPU (Metal/CUDA) the plain MLX ops are used.

`cpu_kernels_on()` is the one switch every model's CPU-only path asks: `MAS_GEMV=off` turns them
all off, so the models run their plain MLX path, the code a Mac runs (see `_blas`).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import mlx.core as mx
import numpy as np

from . import _blas

THREADS = min(os.cpu_count() or 1, 8)


def cpu_kernels_on() -> bool:
    """True on MLX's CPU device unless `MAS_GEMV=off` routes every model to its plain MLX
    path (the one a Mac's GPU runs)."""
    return mx.default_device() == mx.cpu and not _blas.gemv_turned_off()


def use_cpu_path(x: mx.array) -> bool:
    """The CPU-only fast paths apply to `x`: float32, with `cpu_kernels_on()`."""
    return x.dtype == mx.float32 and cpu_kernels_on()


def numpy_view(x: mx.array) -> np.ndarray | None:
    """Zero-copy NumPy view of the evaluated `x`, or None when it is not a plain C-contiguous
    writable buffer (then in-place writes would not reach `x`)."""
    mx.eval(x)
    a = np.asarray(memoryview(x))
    return a if a.flags.c_contiguous and a.flags.writeable else None


@lru_cache(maxsize=1)
def _pool() -> ThreadPoolExecutor | None:
    return ThreadPoolExecutor(THREADS) if THREADS > 1 else None


def parallel_rows(fn, a: np.ndarray, min_rows: int = 64) -> None:
    """Apply the in-place `fn` to row blocks of the 2-D view `a` on all cores, as torch does
    for its element-wise kernels."""
    pool = _pool()
    if pool is None or a.shape[0] < min_rows:
        fn(a)
        return
    bounds = np.linspace(0, a.shape[0], THREADS + 1).astype(int)
    list(pool.map(fn, [a[lo:hi] for lo, hi in zip(bounds[:-1], bounds[1:])]))
