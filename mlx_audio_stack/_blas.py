"""Load an optimized BLAS into the global symbol scope before MLX is imported (Linux only).

The `mlx[cpu]` Linux wheel links a slow reference BLAS (6 GFLOP/s for a 1024^2 fp32 matmul on
the development machine). Symbols of a BLAS loaded with RTLD_GLOBAL *before* `import mlx.core`
take precedence (measured 188 GFLOP/s with Debian's OpenBLAS, see DESIGN.md). The
scipy/numpy-bundled OpenBLAS builds rename their symbols and do not work.

Override with `MAS_BLAS=/path/to/libblas.so` (or `MAS_BLAS=none` to skip).

Before the BLAS, the CPU kernels library (`kernels/`) is loaded with RTLD_GLOBAL when it is
already built (`mas setup`, or any earlier first use): MLX's calls to `cblas_sgemm` then land
in its few-row products (kernels/c/products.c). Nothing is compiled here, see
`kernels.library`. `MAS_GEMV=off` skips it and every other kernel.
Unless set, OPENBLAS_THREAD_TIMEOUT becomes 4 before OpenBLAS loads (see `load_blas`).

OpenBLAS picks its kernels from its own CPU table, and an older OpenBLAS on a newer CPU falls
back to generic ones: Debian's 0.3.21 ran "Prescott" kernels on an AVX-512 Xeon (40 instead of
200 GFLOP/s for a 1024^2 sgemm). Unless OPENBLAS_CORETYPE is already set (by the user, or
preset by the machine's environment: it always wins), it is set from the CPU's own flags before
the library loads (`coretype_for`). After loading, a cheap sgemm check (cached per machine in
~/.cache/mlx-audio-stack) warns once when the BLAS still runs generic kernels or below a sane
speed; `mas doctor` prints all of it.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import platform
import sys
import time
import warnings

from .kernels import build as _build
from .kernels import library as kernels

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
SET_ENV: dict[str, str] = {}  # environment variables set here (child processes inherit them)


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
    # OpenBLAS's idle threads spin ~0.1 s (2^28 cycles) after each product before they sleep.
    # Here the products alternate with the CPU kernels' passes on all cores, and a spinning BLAS
    # thread took a core from them: in an ECAPA pass those passes ran 10-20x slower than
    # alone. 2^4 cycles: they sleep at once (read when OpenBLAS loads; the user's value wins).
    if "OPENBLAS_THREAD_TIMEOUT" not in os.environ:
        os.environ["OPENBLAS_THREAD_TIMEOUT"] = SET_ENV["OPENBLAS_THREAD_TIMEOUT"] = "4"
    # OpenBLAS reads its core type when it loads; an existing value is the user's and wins
    core = coretype_for(cpu_flags()) if platform.machine() in ("x86_64", "AMD64") else None
    if core and "OPENBLAS_CORETYPE" not in os.environ:
        os.environ["OPENBLAS_CORETYPE"] = SET_ENV["OPENBLAS_CORETYPE"] = core
    for path in paths:
        if os.path.exists(path):
            shim = kernels.load_early()  # first: MLX's cblas_sgemm must resolve to it
            try:
                ctypes.CDLL(path, mode=os.RTLD_GLOBAL)
            except OSError as exc:
                warnings.warn(f"could not load BLAS {path}: {exc}", stacklevel=2)
                continue
            loaded = path
            kernels.attach(shim, path, early=True)
            if os.environ.get("MAS_BLAS_CHECK", "").strip().lower() not in ("0", "off", "no"):
                check_blas()
            return path
    where = f"MAS_BLAS={override} does not exist" if override else "no optimized BLAS found"
    print(f"mlx-audio-stack: {where}; MLX CPU matmuls will be ~30x slower: {FIX}", file=sys.stderr)
    return None


_MALLOC_TUNED = False


def keep_large_buffers() -> bool:
    """Stop glibc from giving large freed buffers back to the OS (Linux only, once).

    MLX's CPU allocator mallocs every intermediate; glibc serves buffers above its mmap
    threshold (128 KiB .. 32 MiB, adaptive) with fresh mmaps, freed with munmap, so every
    large intermediate page-faults again. On the development VM that made an ECAPA batch of
    8 x 3 s several times slower (one (8, 301, 3072) exp: 183 ms -> 27 ms) and the Whisper
    tiny encoder 25 % slower. Raising the mmap and trim thresholds keeps the memory in the
    heap for reuse (peak RSS then stays at its high-water mark). Process-wide; returns True
    if applied. The models' first CPU forward applies it (`kernels.dispatch.kernels_on`);
    `MAS_MALLOC=default` skips it.
    """
    global _MALLOC_TUNED
    if (
        _MALLOC_TUNED
        or not sys.platform.startswith("linux")
        or (os.environ.get("MAS_MALLOC") == "default")
    ):
        return _MALLOC_TUNED
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(-3, 1 << 30) == 1  # M_MMAP_THRESHOLD: 1 GiB
        ok = libc.mallopt(-1, 1 << 30) == 1 and ok  # M_TRIM_THRESHOLD: 1 GiB
    except (OSError, AttributeError):
        ok = False
    _MALLOC_TUNED = ok
    return ok


def release_free_memory() -> bool:
    """Give the free pages inside glibc's heap back to the OS (`malloc_trim(0)`), when
    `keep_large_buffers` stopped glibc from doing it itself. A long pipeline run calls this
    once per audio minute: without it its resident memory grew in steps over an hour (+40 MB
    in 60 min, ~150 MB free inside the heap after minute 1, measured with `mallinfo2`), the
    heap growing around its own free space. Returns True if it ran."""
    if not _MALLOC_TUNED:
        return False
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        return False
    return True


# OpenBLAS core names without FMA kernels (what a misdetected modern x86 CPU falls back to)
GENERIC_CORES = frozenset(
    "katmai coppermine northwood prescott banias core2 penryn dunnington nehalem atom "
    "sandybridge athlon opteron opteron_sse3 barcelona bobcat nano generic".split()
)
SANE_GFLOPS = 15.0  # below this a 512^2 sgemm is reference-BLAS speed (6 GFLOP/s measured)
_CHECK_N = 512
_warned = False


def cpu_flags() -> set[str]:
    """The first CPU's feature flags from /proc/cpuinfo (empty where there is none)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def coretype_for(flags: set[str]) -> str | None:
    """The OpenBLAS core type whose kernels an x86 CPU with these flags runs best.

    AVX-512 (F, BW, VL) -> SkylakeX, Cooperlake with AVX512-BF16; AVX2 + FMA -> Haswell (its
    kernels are also what OpenBLAS's Zen target runs); AVX -> Sandybridge; SSE4.2 -> Nehalem.
    On an AMD EPYC (Zen 4) every AVX2/AVX-512 type ran a 1024^2 sgemm at the same speed,
    Prescott at 0.4x (reports/blas.md).
    """
    if {"avx512f", "avx512bw", "avx512vl"} <= flags:
        return "Cooperlake" if "avx512_bf16" in flags else "SkylakeX"
    if {"avx2", "fma"} <= flags:
        return "Haswell"
    if "avx" in flags:
        return "Sandybridge"
    if "sse4_2" in flags:
        return "Nehalem"
    return None


def _blas_lib() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(loaded, mode=os.RTLD_GLOBAL) if loaded else None
    except OSError:
        return None


def corename() -> str | None:
    """The core type the loaded OpenBLAS runs (`openblas_get_corename`), None if not OpenBLAS."""
    lib = _blas_lib()
    fn = getattr(lib, "openblas_get_corename", None) if lib is not None else None
    if fn is None:
        return None
    fn.restype = ctypes.c_char_p
    return fn().decode()


def blas_config() -> str | None:
    """OpenBLAS's build line (`openblas_get_config`: version, DYNAMIC_ARCH, threads)."""
    lib = _blas_lib()
    fn = getattr(lib, "openblas_get_config", None) if lib is not None else None
    if fn is None:
        return None
    fn.restype = ctypes.c_char_p
    return fn().decode()


def sgemm_gflops(n: int = _CHECK_N, repeats: int = 3) -> float | None:
    """GFLOP/s of the loaded BLAS's own `cblas_sgemm` on (n, n) float32 products (best of
    `repeats` after one warm-up), or None when no BLAS is loaded."""
    lib = _blas_lib()
    fn = getattr(lib, "cblas_sgemm", None) if lib is not None else None
    if fn is None:
        return None
    vp, ci, cf = ctypes.c_void_p, ctypes.c_int, ctypes.c_float
    fn.argtypes = [ci] * 6 + [cf, vp, ci, vp, ci, cf, vp, ci]
    fn.restype = None
    a, b, c = ((ctypes.c_float * (n * n))() for _ in range(3))
    for i in range(0, n * n, 7):  # not all zeros; values do not change the speed
        a[i] = b[i] = 0.5
    best = float("inf")
    for i in range(repeats + 1):
        t = time.perf_counter()
        fn(101, 111, 111, n, n, n, 1.0, a, n, b, n, 0.0, c, n)  # row-major, no transposes
        if i:
            best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def _check_key() -> str:
    parts = [_build.cpu_signature().decode(errors="replace"), str(loaded), blas_config() or ""]
    parts += [f"{k}={os.environ.get(k, '')}" for k in ("OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS")]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def check_blas(remeasure: bool = False) -> dict:
    """Is the loaded BLAS fast enough? Returns {"core", "gflops", "problem", "cached"}.

    A passing result is cached per machine, library and core setting (one sgemm check costs
    ~10 ms; cached, nothing); a failing one is measured again next time (it may have been a
    busy machine) and warned about once per process on stderr.
    """
    global _warned
    path = _build.cache_dir() / "blas-check.json"
    key = _check_key()
    try:
        cache = json.loads(path.read_text())
    except (OSError, ValueError):
        cache = {}
    hit = cache.get(key) if isinstance(cache, dict) and not remeasure else None
    if hit is not None:
        return dict(hit, cached=True)
    core = corename()
    gflops = sgemm_gflops()
    problem = None
    flags = cpu_flags()
    if core and core.lower() in GENERIC_CORES and {"avx2", "fma"} <= flags:
        want = coretype_for(flags)
        problem = (
            f"OpenBLAS runs its generic {core} kernels on a CPU with AVX2"
            f"{'/AVX-512' if 'avx512f' in flags else ''} (OPENBLAS_CORETYPE="
            f"{os.environ.get('OPENBLAS_CORETYPE', 'unset')}); unset it or set "
            f"OPENBLAS_CORETYPE={want} (~2.5x faster)"
        )
    elif gflops is not None and gflops < SANE_GFLOPS:
        problem = f"the BLAS ({loaded}) runs a {_CHECK_N}^2 sgemm at only {gflops:.1f} GFLOP/s"
        load, cpus = os.getloadavg()[0], os.cpu_count() or 1
        if load > cpus:  # other processes hold the cores: the figure may be theirs
            problem += f" (load average {load:.0f} on {cpus} CPUs: measure again when idle)"
    result = {"core": core, "gflops": gflops, "problem": problem}
    if problem is None:
        try:
            cache = cache if isinstance(cache, dict) else {}
            cache[key] = result
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}")
            tmp.write_text(json.dumps(cache, indent=1))
            os.replace(tmp, path)
        except OSError:
            pass  # an unwritable cache only costs the check next time
    elif not _warned:
        _warned = True
        print(f"mlx-audio-stack: slow BLAS: {problem}; see `mas doctor`", file=sys.stderr)
    return dict(result, cached=False)


def blas_report(n: int = 1024) -> dict:
    """What `mas doctor` prints: the BLAS loaded, the core it runs and who chose it, its
    GFLOP/s for an (n, n) float32 product through MLX, and the CPU kernels' state."""
    import mlx.core as mx

    flags = cpu_flags()
    a = mx.random.normal((n, n))
    b = mx.random.normal((n, n))
    mx.eval(a, b)
    times = []
    for _ in range(8):
        t = time.perf_counter()
        mx.eval(a @ b)
        times.append(time.perf_counter() - t)
    coretype = os.environ.get("OPENBLAS_CORETYPE")
    if "OPENBLAS_CORETYPE" in SET_ENV:
        chosen = "set by mlx-audio-stack from the CPU flags"
    elif coretype:
        chosen = "set in your environment (it wins)"
    else:
        chosen = "unset (OpenBLAS detects the CPU itself)"
    if kernels.turned_off():
        gemv = "off (MAS_GEMV)"
    elif kernels.early():
        gemv = f"on ({kernels.threads()} threads, {kernels.forwarded()} of MLX's products so far)"
    elif _build.built() is None:
        gemv = "off: not built (`mas setup` builds them; else their first use)"
    else:
        gemv = "off: built, not loaded ahead of MLX (no BLAS, or MLX imported first)"
    check = check_blas(remeasure=True) if loaded else {"problem": "no optimized BLAS loaded"}
    return {
        "cpu": cpu_model(),
        "isa": ", ".join(f for f in ("avx512f", "avx512_bf16", "avx2", "fma") if f in flags),
        "blas": loaded or "none (MLX's bundled reference BLAS)",
        "config": blas_config(),
        "core": corename(),
        "expected_core": coretype_for(flags),
        "OPENBLAS_CORETYPE": f"{coretype or '-'}: {chosen}",
        "gflops_mlx": 2 * n**3 / min(times[2:]) / 1e9,
        "gflops_n": n,
        "gemv": gemv,
        "problem": check.get("problem"),
        # every OpenBLAS/MAS variable in force (some machines preset OPENBLAS_L2_SIZE too)
        "env": {k: v for k, v in sorted(os.environ.items()) if k.startswith(("OPENBLAS_", "MAS_"))},
    }


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), else what `platform` knows: for reports."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
