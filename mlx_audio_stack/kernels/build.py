"""Build the CPU kernels library from `kernels/c/*.c` with the system's C compiler.

One shared object from every C file in `c/` (products, element-wise, attention, convolution
pieces, LSTM, the thread pool they share), compiled with -O3 -march=native, cached under
~/.cache/mlx-audio-stack (else the temp dir) as `kernels-<key>.so`, the key a hash of the
sources and this CPU's model and flags. Nothing here runs at import: `_blas.load_blas` only
loads a library that is already built (`built()`); `build()` runs from `mas setup` or on a
kernel's first use (`library.library()`).

Only the standard library is imported here (it runs before `import mlx.core`).
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

SOURCES = Path(__file__).with_name("c")
FLAGS = ["-O3", "-shared", "-fPIC", "-pthread"]
LIBS = ["-ldl", "-lm"]


def c_compiler() -> str | None:
    """The C compiler the kernels are built with: `$CC` (default `cc`), else `gcc`."""
    cc = os.environ.get("CC", "").strip()
    if cc:  # the user's choice, or nothing: never a different compiler behind their back
        return shutil.which(cc)
    return shutil.which("cc") or shutil.which("gcc")


def cache_dir() -> Path:
    """~/.cache/mlx-audio-stack (or $XDG_CACHE_HOME/mlx-audio-stack)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mlx-audio-stack"


def _cache_dirs() -> tuple[Path, Path]:
    return cache_dir(), Path(tempfile.gettempdir()) / "mlx-audio-stack"


def cpu_signature() -> bytes:
    """The machine and its CPU's model and feature flags (what -march=native builds for)."""
    sig = platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            keys = ("model name", "flags", "Features", "CPU part")
            lines = [ln for ln in f if ln.startswith(keys)]
        sig += "".join(sorted(set(lines)))
    except OSError:
        pass
    return sig.encode()


def _sources() -> list[Path]:
    return sorted(SOURCES.glob("*.c")) + sorted(SOURCES.glob("*.h"))


def library_name() -> str:
    """`kernels-<key>.so`: the key hashes every source file and this CPU."""
    h = hashlib.sha256(cpu_signature())
    for src in _sources():
        h.update(src.name.encode() + b"\0" + src.read_bytes())
    return f"kernels-{h.hexdigest()[:16]}.so"


def built() -> Path | None:
    """The library built for these sources and this CPU, if it exists (no compiling)."""
    name = library_name()
    for cache in _cache_dirs():
        if (cache / name).exists():
            return cache / name
    return None


class BuildError(RuntimeError):
    """The kernels could not be built here (the message says why, in one line)."""


def build() -> Path:
    """The built library, compiling it first when it is missing (once per sources and CPU;
    written to a temp name, then renamed). Raises BuildError naming the reason."""
    done = built()
    if done is not None:
        return done
    cc = c_compiler()
    if cc is None:
        want = os.environ.get("CC", "").strip() or "cc or gcc"
        raise BuildError(f"no C compiler found ({want})")
    name, why = library_name(), "no writable cache directory"
    srcs = [str(p) for p in sorted(SOURCES.glob("*.c"))]
    for cache in _cache_dirs():
        so = cache / name
        tmp = cache / f".{name}.{os.getpid()}.tmp"
        try:
            cache.mkdir(parents=True, exist_ok=True)
            for arch in (["-march=native"], []):  # a compiler may not know -march=native
                cmd = [cc, *FLAGS, *arch, "-o", str(tmp), *srcs, *LIBS]
                run = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
                if run.returncode == 0:
                    os.replace(tmp, so)
                    return so
            tmp.unlink(missing_ok=True)
            last = (run.stderr.strip().splitlines() or ["no output"])[-1]
            raise BuildError(f"{cc} failed: {last}")
        except (OSError, subprocess.SubprocessError) as exc:
            why = f"{type(exc).__name__}: {exc}"
            continue  # an unwritable cache: try the next one
    raise BuildError(why)
