"""Load an optimized BLAS into the global symbol scope before MLX is imported (Linux only).

The `mlx[cpu]` Linux wheel links a slow reference BLAS (6 GFLOP/s for a 1024^2 fp32 matmul on
the development machine). Symbols of a BLAS loaded with RTLD_GLOBAL *before* `import mlx.core`
take precedence (measured 188 GFLOP/s with Debian's OpenBLAS, see DESIGN.md). The
scipy/numpy-bundled OpenBLAS builds rename their symbols and do not work.

Override with `MAS_BLAS=/path/to/libblas.so` (or `MAS_BLAS=none` to skip).

With it comes a small C file (`_gemv.c`, compiled once with the system C compiler into the
user cache) that takes MLX's float32 products of up to GEMV_ROWS rows away from the BLAS's
sgemm, which packs the whole weight first, and reads each weight once for all rows on a few
threads: a Whisper decoding step (one row), a beam-search step (five rows). It also has an
in-place row softmax and GELU with a vectorised exp, a fused attention for Whisper's encoder
and a layer norm, see `elementwise()`.
`MAS_GEMV=off` skips it, and with it every model's other CPU-only path (`cpu_ops.cpu_kernels_on`:
Whisper's C and NumPy attention, softmax, GELU, layer norm, step cache and output projection,
ECAPA's `CpuForward` and in-place softmax, MossFormer2's `cpu_kernels`, the voice encoder's
`_lstm.c`): the models then run their plain MLX path, the code a Mac runs, on the BLAS loaded
here (`make test` runs the parity and end-to-end tests a second time so). Without a C compiler
`_gemv.c` is skipped silently. `MAS_GEMV_THREADS` sets
its thread count (default: OPENBLAS_NUM_THREADS, else the usable CPUs, at most 8).
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
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

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
gemv_forward: ctypes.CDLL | None = None  # the loaded `_gemv.c`, see _gemv_library()
GEMV_ROWS = 8  # products with at most this many rows are computed by `_gemv.c`
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
    # Here the products alternate with `_gemv.c`'s passes on all cores, and a spinning BLAS
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
            shim = _gemv_library()  # first: MLX's cblas_sgemm must resolve to it
            try:
                ctypes.CDLL(path, mode=os.RTLD_GLOBAL)
            except OSError as exc:
                warnings.warn(f"could not load BLAS {path}: {exc}", stacklevel=2)
                continue
            loaded = path
            _init_gemv(shim, path)
            if os.environ.get("MAS_BLAS_CHECK", "").strip().lower() not in ("0", "off", "no"):
                check_blas()
            return path
    where = f"MAS_BLAS={override} does not exist" if override else "no optimized BLAS found"
    print(f"mlx-audio-stack: {where}; MLX CPU matmuls will be ~30x slower: {FIX}", file=sys.stderr)
    return None


def _gemv_library() -> ctypes.CDLL | None:
    """Compile (once, cached by source hash) and load `_gemv.c` with RTLD_GLOBAL, or None
    (turned off, not Linux x86/arm, no C compiler, build failed)."""
    if gemv_turned_off():
        return None
    src = Path(__file__).with_name("_gemv.c")
    return compile_library(src, "gemv", ["-pthread"], ["-ldl"], mode=os.RTLD_GLOBAL)


def compile_library(
    src: Path, stem: str, flags: list[str], libs: list[str], mode: int = ctypes.DEFAULT_MODE
) -> ctypes.CDLL | None:
    """Compile the C file `src` with the system's compiler (once: cached as `<stem>-<key>.so`
    under ~/.cache/mlx-audio-stack, else the temp dir) and load it; None when no compiler is
    found or the build fails."""
    cc = c_compiler()
    if cc is None or not src.exists():
        return None
    # -march=native: the build is for this CPU, so the key names it too
    key = hashlib.sha256(src.read_bytes() + _cpu_signature()).hexdigest()[:16]
    for cache in (_cache_dir(), Path(tempfile.gettempdir()) / "mlx-audio-stack"):
        so = cache / f"{stem}-{key}.so"
        try:
            if not so.exists():
                cache.mkdir(parents=True, exist_ok=True)
                tmp = cache / f".{stem}-{key}.{os.getpid()}.so"  # compile, then rename: atomic
                for arch in (["-march=native"], []):  # a compiler may not know -march=native
                    cmd = [cc, "-O3", *arch, "-shared", "-fPIC", *flags, "-o", str(tmp)]
                    cmd += [str(src), *libs]
                    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
                    if done.returncode == 0:
                        break
                if done.returncode != 0:
                    tmp.unlink(missing_ok=True)
                    return None
                os.replace(tmp, so)
            return ctypes.CDLL(str(so), mode=mode)
        except (OSError, subprocess.SubprocessError):
            continue  # unwritable cache: try the next one
    return None


def _cpu_signature() -> bytes:
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


def gemv_threads() -> int:
    """Threads for `_gemv.c`'s products: `MAS_GEMV_THREADS`, else `OPENBLAS_NUM_THREADS`,
    else the CPUs this process may use, at most 8 (a step's products are memory-bound)."""
    for name in ("MAS_GEMV_THREADS", "OPENBLAS_NUM_THREADS"):
        value = os.environ.get(name, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)  # `_gemv.c` caps it at its MAX_THREADS (16)
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 8))


def gemv_turned_off() -> bool:
    """True when `MAS_GEMV` asks to skip the forward."""
    return os.environ.get("MAS_GEMV", "").strip().lower() in ("0", "off", "none", "no")


def c_compiler() -> str | None:
    """The C compiler the forward is built with: `$CC` (default `cc`), else `gcc`."""
    return shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mlx-audio-stack"


def _init_gemv(shim: ctypes.CDLL | None, blas_path: str) -> None:
    global gemv_forward
    if shim is None:
        return
    shim.mas_gemv_init.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_int]
    shim.mas_gemv_forwarded.restype = ctypes.c_long
    shim.mas_softmax_rows.argtypes = [ctypes.c_void_p, ctypes.c_long, ctypes.c_long]
    shim.mas_softmax_rows.restype = None
    shim.mas_gelu.argtypes = [ctypes.c_void_p, ctypes.c_long]
    shim.mas_gelu.restype = None
    shim.mas_attention.argtypes = [ctypes.c_void_p] * 3 + [ctypes.c_long] * 10 + [ctypes.c_float]
    shim.mas_attention.restype = ctypes.c_int
    shim.mas_attention_step.argtypes = (
        [ctypes.c_void_p] * 3 + [ctypes.c_long] * 6 + [ctypes.c_float]
    )
    shim.mas_attention_step.restype = ctypes.c_int
    shim.mas_res2net.argtypes = [ctypes.c_void_p] + [ctypes.c_long] * 6 + [ctypes.c_void_p] * 5
    shim.mas_res2net.restype = ctypes.c_int
    shim.mas_layer_norm.argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_long] * 2 + [ctypes.c_float]
    shim.mas_layer_norm.restype = None
    vp, lg, fl = ctypes.c_void_p, ctypes.c_long, ctypes.c_float
    shim.cblas_sgemm.argtypes = [ctypes.c_int] * 6 + [fl, vp, ctypes.c_int, vp, ctypes.c_int]
    shim.cblas_sgemm.argtypes += [fl, vp, ctypes.c_int]
    shim.cblas_sgemm.restype = None
    shim.mas_im2col.argtypes = [vp] + [lg] * 6 + [vp, vp]
    shim.mas_im2col.restype = None
    shim.mas_bias_relu_affine.argtypes = [vp] + [lg] * 3 + [vp] * 3 + [ctypes.c_int]
    shim.mas_bias_relu_affine.restype = None
    shim.mas_scale_add.argtypes = [vp, lg, vp, lg, vp, vp] + [lg] * 4
    shim.mas_scale_add.restype = None
    shim.mas_time_stats.argtypes = [vp] + [lg] * 4 + [vp, fl, vp, vp]
    shim.mas_time_stats.restype = None
    shim.mas_attentive_stats.argtypes = [vp] * 3 + [lg] * 4 + [vp, fl, vp, vp]
    shim.mas_attentive_stats.restype = None
    if shim.mas_gemv_init(os.fsencode(blas_path), GEMV_ROWS, gemv_threads()) == 0:
        gemv_forward = shim


def elementwise() -> ctypes.CDLL | None:
    """`_gemv.c`'s in-place softmax over rows and GELU (vectorised exp, on its threads), its
    fused attention and layer norm, or None where it is not loaded:
    `mas_softmax_rows(ptr, rows, cols)`, `mas_gelu(ptr, n)`, `mas_attention(q, k, v, B, T, S,
    H, ldq, ldk, ldv, bq, bk, bv, scale)` (64-wide heads, result in q, returns nonzero when out
    of memory), `mas_attention_step(q, k, v, Bk, R, S, H, ldq, ldh, scale)` (a decoding step's
    R <= 16 query rows per head-major cache), `mas_layer_norm(x, w, b, y, rows, cols, eps)`,
    `mas_res2net(x, B, T, scale, c, k, d, frames, w, bias, bn_scale, bn_shift)`, and ECAPA's
    passes between products (`mas_im2col`, `mas_bias_relu_affine`, `mas_scale_add`,
    `mas_time_stats`, `mas_attentive_stats`, see models/ecapa/cpu_forward.py); `cblas_sgemm`
    is the product itself (this file's for up to GEMV_ROWS rows, else the BLAS's)."""
    return gemv_forward


def gemv_forwarded() -> int:
    """How many matrix products `_gemv.c` has computed for MLX (0 when it is off)."""
    return int(gemv_forward.mas_gemv_forwarded()) if gemv_forward is not None else 0


_MALLOC_TUNED = False


def keep_large_buffers() -> bool:
    """Stop glibc from giving large freed buffers back to the OS (Linux only, once).

    MLX's CPU allocator mallocs every intermediate; glibc serves buffers above its mmap
    threshold (128 KiB .. 32 MiB, adaptive) with fresh mmaps, freed with munmap, so every
    large intermediate page-faults again. On the development VM that made an ECAPA batch of
    8 x 3 s several times slower (one (8, 301, 3072) exp: 183 ms -> 27 ms) and the Whisper
    tiny encoder 25 % slower. Raising the mmap and trim thresholds keeps the memory in the
    heap for reuse (peak RSS then stays at its high-water mark). Process-wide; returns True
    if applied. `import mlx_audio_stack` applies it; `MAS_MALLOC=default` skips it.
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
    parts = [_cpu_signature().decode(errors="replace"), str(loaded), blas_config() or ""]
    parts += [f"{k}={os.environ.get(k, '')}" for k in ("OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS")]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def check_blas(remeasure: bool = False) -> dict:
    """Is the loaded BLAS fast enough? Returns {"core", "gflops", "problem", "cached"}.

    A passing result is cached per machine, library and core setting (one sgemm check costs
    ~10 ms; cached, nothing); a failing one is measured again next time (it may have been a
    busy machine) and warned about once per process on stderr.
    """
    global _warned
    path = _cache_dir() / "blas-check.json"
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
    GFLOP/s for an (n, n) float32 product through MLX, and whether `_gemv.c` is on."""
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
    if gemv_forward is not None:
        gemv = f"on ({gemv_threads()} threads, {gemv_forwarded()} products so far)"
    elif gemv_turned_off():
        gemv = "off (MAS_GEMV)"
    elif c_compiler() is None:
        gemv = "off (no C compiler)"
    else:
        gemv = "off (no BLAS loaded, or the build failed)"
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
