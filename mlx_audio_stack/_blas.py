"""Load an optimized BLAS into the global symbol scope before MLX is imported (Linux only).

The `mlx[cpu]` Linux wheel links a slow reference BLAS (6 GFLOP/s for a 1024^2 fp32 matmul on
the development machine). Symbols of a BLAS loaded with RTLD_GLOBAL *before* `import mlx.core`
take precedence (measured 188 GFLOP/s with Debian's OpenBLAS, see DESIGN.md). The
scipy/numpy-bundled OpenBLAS builds rename their symbols and do not work.

Override with `MAS_BLAS=/path/to/libblas.so` (or `MAS_BLAS=none` to skip).
"""

from __future__ import annotations

import ctypes
import os
import sys
import warnings

CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3",
    "/usr/lib/aarch64-linux-gnu/openblas-pthread/libblas.so.3",
    "/usr/lib/x86_64-linux-gnu/openblas-openmp/libblas.so.3",
    "/usr/lib/aarch64-linux-gnu/openblas-openmp/libblas.so.3",
    "/usr/lib64/libopenblas.so.0",
    "/usr/lib/libopenblas.so.0",
    "/usr/lib/x86_64-linux-gnu/libopenblas.so.0",
)
FIX = "install Debian's libopenblas0-pthread (apt-get install libopenblas0-pthread) or set MAS_BLAS"

loaded: str | None = None


def load_blas() -> str | None:
    """Load the BLAS once; return its path, or None when none was loaded (or not needed)."""
    global loaded
    if loaded is not None or not sys.platform.startswith("linux"):
        return loaded
    override = os.environ.get("MAS_BLAS", "").strip()
    if override.lower() == "none":
        return None
    if "mlx.core" in sys.modules:
        warnings.warn(
            "mlx.core was imported before mlx_audio_stack; the fast BLAS cannot be "
            "loaded in this process (import mlx_audio_stack first)",
            stacklevel=2,
        )
        return None
    paths = (override,) if override else CANDIDATES
    for path in paths:
        if os.path.exists(path):
            try:
                ctypes.CDLL(path, mode=os.RTLD_GLOBAL)
            except OSError as exc:
                warnings.warn(f"could not load BLAS {path}: {exc}", stacklevel=2)
                continue
            loaded = path
            return path
    where = f"MAS_BLAS={override} does not exist" if override else "no optimized BLAS found"
    print(f"mlx-audio-stack: {where}; MLX CPU matmuls will be ~30x slower: {FIX}", file=sys.stderr)
    return None
