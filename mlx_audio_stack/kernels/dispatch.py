"""The one place that decides whether a CPU kernel runs: `kernels_on()` / `use_kernels(x)`.

Every kernel in this package has an MLX twin in its model (the code a Mac runs); a model asks
here and calls the kernel where the answer is yes. `MAS_GEMV=off` says no everywhere, so the
models run their plain MLX path on MLX's CPU backend (`make test` runs the parity and
end-to-end tests a second time so; tests/_plain_path.py probes these gates).

Also here: zero-copy NumPy views of evaluated MLX arrays (`numpy_view`) for in-place kernels,
`parallel_rows` for NumPy work on the kernels' thread count, and `gemm`, the kernels' products.
"""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import mlx.core as mx
import numpy as np

from . import library

_malloc_tuned = False
ROW_MAJOR, NO_TRANS = 101, 111


def kernels_on() -> bool:
    """True on MLX's CPU device unless `MAS_GEMV=off` routes every model to its plain MLX
    path (the one a Mac's GPU runs). The first call on Linux also tunes glibc's malloc for
    MLX's large intermediates (`_blas.keep_large_buffers`, process-wide)."""
    global _malloc_tuned
    cpu = mx.default_device() == mx.cpu
    if cpu and not _malloc_tuned and sys.platform.startswith("linux"):
        from .._blas import keep_large_buffers

        _malloc_tuned = True
        keep_large_buffers()
    return cpu and not library.turned_off()


def use_kernels(x: mx.array) -> bool:
    """The CPU kernels apply to `x`: float32, with `kernels_on()`."""
    return x.dtype == mx.float32 and kernels_on()


def numpy_view(x: mx.array) -> np.ndarray | None:
    """Zero-copy NumPy view of the evaluated `x`, or None when it is not a plain C-contiguous
    writable buffer (then in-place writes would not reach `x`)."""
    mx.eval(x)
    a = np.asarray(memoryview(x))
    return a if a.flags.c_contiguous and a.flags.writeable else None


@lru_cache(maxsize=1)
def _pool() -> ThreadPoolExecutor | None:
    n = library.threads()
    return ThreadPoolExecutor(n) if n > 1 else None


def parallel_rows(fn, a: np.ndarray, min_rows: int = 64) -> None:
    """Apply the in-place `fn` to row blocks of the 2-D view `a` on the kernels' thread count,
    as torch does for its element-wise kernels."""
    pool = _pool()
    if pool is None or a.shape[0] < min_rows:
        fn(a)
        return
    bounds = np.linspace(0, a.shape[0], pool._max_workers + 1).astype(int)
    list(pool.map(fn, [a[lo:hi] for lo, hi in zip(bounds[:-1], bounds[1:])]))


def gemm(a: np.ndarray, lda: int, k: int, w: np.ndarray, out: np.ndarray, ldo: int, rows: int,
         beta: float = 0.0) -> None:  # fmt: skip
    """out[:rows, :n] = a[:rows, :k] @ w (k, n) (+ out when beta is 1), row strides lda, ldo;
    float32 buffers. Through the library's `cblas_sgemm` (products.c's few-row kernels, else
    the BLAS MLX uses), never NumPy's `@`: NumPy's own BLAS's idle threads would spin against
    this one's (an ECAPA pass took 2x as long)."""
    n = w.shape[1]
    library.library().cblas_sgemm(
        ROW_MAJOR, NO_TRANS, NO_TRANS, rows, n, k, 1.0, a.ctypes.data, lda, w.ctypes.data, n,
        beta, out.ctypes.data, ldo,
    )  # fmt: skip
