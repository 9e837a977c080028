"""In-place NumPy fast paths for MLX's CPU backend, shared by the models.

MLX's CPU backend runs element-wise ops on one thread, and its transcendental ops (exp, erf)
as scalar loops. Where that dominates, a model evaluates the MLX array and does the
element-wise work in place in its buffer, through a zero-copy NumPy view, on all cores (NumPy's
ufuncs are vectorised and release the GIL). On a GPU (Metal/CUDA) the plain MLX ops are used.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import mlx.core as mx
import numpy as np

THREADS = min(os.cpu_count() or 1, 8)


def use_cpu_path(x: mx.array) -> bool:
    return mx.default_device() == mx.cpu and x.dtype == mx.float32


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
