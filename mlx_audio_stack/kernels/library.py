"""The loaded CPU kernels library (`c/*.c`, see build.py): loading, its C signatures, the switch.

Two ways in:
- `_blas.load_blas` (at `import mlx_audio_stack`, before `import mlx.core`) loads the library
  with RTLD_GLOBAL *if it is already built*, ahead of the BLAS, so that MLX's calls to
  `cblas_sgemm` (bound when `mlx.core` loads: Python opens extensions with RTLD_NOW) land in
  products.c. Only this needs the early load; nothing is compiled at import.
- `library()`, on a kernel's first use, builds the library when it is missing and loads it:
  every kernel then runs, but MLX's own few-row products go to the BLAS until the next process
  (`mas setup` builds it ahead). When it cannot be built (no compiler, a failed build) it warns
  once and the models run their plain MLX path.

`MAS_GEMV=off` turns every kernel off (`turned_off`). `MAS_GEMV_THREADS` sets the pool's thread
count (default: OPENBLAS_NUM_THREADS, else the usable CPUs, at most 8).

Only the standard library is imported here (it runs before `import mlx.core`).
"""

from __future__ import annotations

import ctypes
import os
import sys
import warnings

from . import build

GEMV_ROWS = 8  # MLX's products with at most this many rows are computed by products.c

_lib: ctypes.CDLL | None = None
_early = False  # loaded before MLX: MLX's products go through it
_tried = False
_warned: set[str] = set()


def turned_off() -> bool:
    """True when `MAS_GEMV` turns the kernels off (the models' plain MLX path, a Mac's)."""
    return os.environ.get("MAS_GEMV", "").strip().lower() in ("0", "off", "none", "no")


def threads() -> int:
    """Threads for the kernels' pool: `MAS_GEMV_THREADS`, else `OPENBLAS_NUM_THREADS`, else the
    CPUs this process may use, at most 8 (a decoding step's products are memory-bound)."""
    for name in ("MAS_GEMV_THREADS", "OPENBLAS_NUM_THREADS"):
        value = os.environ.get(name, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)  # the pool caps it at its MAX_THREADS (16)
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 8))


def warn_once(key: str, message: str) -> None:
    """warnings.warn(message) the first time `key` is seen in this process."""
    if key not in _warned:
        _warned.add(key)
        warnings.warn(f"mlx-audio-stack: {message}", RuntimeWarning, stacklevel=3)


def load_early() -> ctypes.CDLL | None:
    """Load the already built library with RTLD_GLOBAL (for `_blas.load_blas`, before the BLAS
    and MLX); None when it is off, not built yet, or does not load. Compiles nothing."""
    if turned_off() or not sys.platform.startswith("linux"):
        return None
    path = build.built()
    if path is None:
        return None
    try:
        return ctypes.CDLL(str(path), mode=os.RTLD_GLOBAL)
    except OSError:
        return None  # library() rebuilds nothing, but reports it on first use


def attach(lib: ctypes.CDLL | None, blas_path: str, early: bool) -> None:
    """Declare the library's C signatures and start it on the BLAS it forwards to."""
    global _lib, _early, _tried
    if lib is None:
        return
    vp, lg, fl, ci = ctypes.c_void_p, ctypes.c_long, ctypes.c_float, ctypes.c_int
    sigs = {
        "mas_gemv_init": ([ctypes.c_char_p, ci, ci], ci),
        "mas_gemv_forwarded": ([], lg),
        "mas_softmax_rows": ([vp, lg, lg], None),
        "mas_gelu": ([vp, lg], None),
        "mas_layer_norm": ([vp] * 4 + [lg] * 2 + [fl], None),
        "mas_attention": ([vp] * 3 + [lg] * 10 + [fl], ci),
        "mas_attention_step": ([vp] * 3 + [lg] * 6 + [fl], ci),
        "mas_res2net": ([vp] + [lg] * 6 + [vp] * 5, ci),
        "cblas_sgemm": ([ci] * 6 + [fl, vp, ci, vp, ci, fl, vp, ci], None),
        "mas_im2col": ([vp] + [lg] * 6 + [vp, vp], None),
        "mas_bias_relu_affine": ([vp] + [lg] * 3 + [vp] * 3 + [ci], None),
        "mas_scale_add": ([vp, lg, vp, lg, vp, vp] + [lg] * 4, None),
        "mas_time_stats": ([vp] + [lg] * 4 + [vp, fl, vp, vp], None),
        "mas_attentive_stats": ([vp] * 3 + [lg] * 4 + [vp, fl, vp, vp], None),
        "mas_lstm_layer": ([vp] * 4 + [lg] * 4, None),
    }
    for name, (args, res) in sigs.items():
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = args, res
    _tried = True
    if lib.mas_gemv_init(os.fsencode(blas_path), GEMV_ROWS, threads()) == 0:
        _lib, _early = lib, early


def library() -> ctypes.CDLL | None:
    """The kernels library, built and loaded on first use; None where the kernels are off
    (`MAS_GEMV=off`), off Linux, without a loaded BLAS, or where the build failed (warned once:
    the models then run their plain MLX path)."""
    global _tried
    if _lib is not None or _tried:
        return _lib
    _tried = True
    if turned_off() or not sys.platform.startswith("linux"):
        return None
    from .. import _blas

    if _blas.loaded is None:  # the products forward to that BLAS
        return None
    fresh = build.built() is None
    try:
        path = build.build()
        lib = ctypes.CDLL(str(path))  # MLX's products are bound already: no RTLD_GLOBAL
    except (build.BuildError, OSError) as exc:
        warn_once("build", f"CPU kernels unavailable ({exc}); the models run their plain MLX "
                  "path (slower on this CPU). `mas setup` builds them.")  # fmt: skip
        return None
    attach(lib, _blas.loaded, early=False)
    if _lib is not None and fresh and "mlx.core" in sys.modules:
        warn_once("late", f"built the CPU kernels ({path.name}) on first use: MLX's few-row "
                  "products use them from the next process on (`mas setup` builds them "
                  "ahead)")  # fmt: skip
    return _lib


def early() -> bool:
    """True when MLX's own products go through the library (it was loaded before MLX)."""
    return _lib is not None and _early


def forwarded() -> int:
    """How many of MLX's matrix products products.c has computed (0 when not loaded early)."""
    return int(_lib.mas_gemv_forwarded()) if _lib is not None else 0
