"""The CPU kernels of `mlx_audio_stack/kernels/` (element-wise and attention), each against
float64 and against its MLX twin (the code a Mac runs), and the build's fallback: no compiler,
one warning, the plain MLX path."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest

from mlx_audio_stack.kernels import build, library

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux-only kernels")


def _lib():
    """The kernels library, or skip (off, or it cannot be built here)."""
    lib = library.library()
    if lib is None:
        pytest.skip("the CPU kernels are off: MAS_GEMV=off, no BLAS, or no C compiler")
    return lib


@linux
@pytest.mark.parametrize(("rows", "cols"), [(1, 1), (3, 15), (5, 16), (7, 17), (9000, 1500)])
def test_softmax_rows_equals_float64(rows, cols):
    """The in-place softmax (vectorised exp, one pass per row) against float64 and its twin
    `mx.softmax`, with row tails off the vector width and a size that splits over the threads;
    rows spanning more than exp's range (their small entries must come out ~0, not garbage)."""
    lib = _lib()
    rng = np.random.default_rng(cols)
    x = (rng.standard_normal((rows, cols)) * 8).astype(np.float32)
    x[0, :] -= np.linspace(0, 200, cols, dtype=np.float32)  # e^-200 underflows float32
    got = x.copy()
    lib.mas_softmax_rows(got.ctypes.data, rows, cols)
    x64 = x.astype(np.float64)
    e = np.exp(x64 - x64.max(axis=1, keepdims=True))
    want = e / e.sum(axis=1, keepdims=True)
    big = want > 1e-3
    assert np.abs(got - want).max() < 2e-6
    assert (np.abs(got - want) / np.where(big, want, 1))[big].max() < 2e-6
    twin = np.array(mx.softmax(mx.array(x), axis=-1, precise=True))
    assert np.abs(got - twin).max() < 5e-6  # the twin's own error is ~2.5e-6 here


@linux
@pytest.mark.parametrize("n", [1, 17, 1024, 1500 * 1536 + 3])
def test_gelu_equals_exact_erf_gelu(n):
    """The in-place GELU (A&S 7.1.26 erf) against the exact erf GELU in float64 and against its
    twin `nn.gelu`, with tails and a threaded size."""
    lib = _lib()
    rng = np.random.default_rng(n)
    x = (rng.standard_normal(n) * 4).astype(np.float32)
    x[: min(n, 6)] = [0.0, -0.0, 1e-8, -30.0, 30.0, -5.0][: min(n, 6)]
    got = x.copy()
    lib.mas_gelu(got.ctypes.data, n)
    x64 = x.astype(np.float64)
    erf = np.vectorize(math.erf)
    exact = 0.5 * x64 * (1 + erf(x64 / math.sqrt(2)))
    bound = 3e-7 + 2.5e-7 * np.abs(x64)  # erf's 1.5e-7 times |x| / 2, and float32 rounding
    assert np.all(np.abs(got - exact) <= bound)
    twin = np.array(nn.gelu(mx.array(x)))
    assert np.all(np.abs(got - twin) <= bound)


def _attention64(q, k, v):
    """float64 softmax(q k^T / 8) v for (..., T, 64) q and (..., S, 64) k, v."""
    s = q.astype(np.float64) @ k.astype(np.float64).swapaxes(-1, -2) / 8.0
    e = np.exp(s - s.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)) @ v.astype(np.float64)


def _heads(x, H):  # (B, T, 64 H) -> (B, H, T, 64)
    return x.reshape(x.shape[0], x.shape[1], H, 64).transpose(0, 2, 1, 3)


@linux
@pytest.mark.parametrize(
    ("B", "T", "S", "H"),
    [(1, 1500, 1500, 6), (2, 97, 33, 3), (1, 49, 1, 2), (1, 300, 257, 1)],
)
def test_fused_encoder_attention_equals_float64(B, T, S, H):
    """The fused attention (Whisper's encoder) against float64 and its twin: query blocks off
    the block size (48) and the tile sizes, keys off the panel width (32), one key, one head,
    batches, and the encoder's full size split over the threads; the result lands in q's
    buffer."""
    lib = _lib()
    from mlx_audio_stack.models.whisper.attention import attention

    rng = np.random.default_rng(T)
    q, k, v = (rng.standard_normal((B, n, 64 * H)).astype(np.float32) * 2 for n in (T, S, S))
    want = _attention64(_heads(q, H), _heads(k, H), _heads(v, H)).transpose(0, 2, 1, 3)
    twin = _twin(q, k, v, H)  # before the kernel: it may overwrite q's own buffer
    if T * S < 1 << 16:  # below that size the model keeps MLX's path: call the kernel itself
        qa = np.ascontiguousarray(q)
        C = 64 * H
        args = (B, T, S, H, C, C, C, T * C, S * C, S * C, 0.125)
        assert lib.mas_attention(qa.ctypes.data, k.ctypes.data, v.ctypes.data, *args) == 0
        got = qa
    else:
        got = np.array(attention(mx.array(q) + 0, mx.array(k), mx.array(v), H))
    assert np.abs(got - want.reshape(got.shape)).max() < 2e-5
    assert np.abs(got - twin.reshape(got.shape)).max() < 5e-5  # the twin's own error is larger


def _twin(q, k, v, H):
    """`attention_mlx` (the twin) for (B, T, 64 H) q over (B, S, 64 H) or (Bk, H, S, 64) k, v."""
    from mlx_audio_stack.models.whisper.attention import attention_mlx

    kh, vh = (mx.array(a if a.ndim == 4 else _heads(a, H)) for a in (k, v))
    return np.array(attention_mlx(mx.array(_heads(q, H)), kh, vh, None))


@linux
@pytest.mark.parametrize(("Bk", "R", "S", "H"), [(1, 5, 1500, 6), (5, 1, 151, 6), (2, 3, 17, 8)])
def test_step_attention_equals_float64(Bk, R, S, H, monkeypatch):
    """A decoding step's attention: R query rows per cache (the beams of one audio over its
    cross-attention keys, or one row per beam's own cache), rows off the 4-row output tile,
    caches contiguous or a `KVCache` with room to spare; against float64 and the twin."""
    _lib()
    from mlx_audio_stack.kernels import attention as kernels
    from mlx_audio_stack.models.whisper import attention as att

    rng = np.random.default_rng(S)
    q = rng.standard_normal((Bk * R, 1, 64 * H)).astype(np.float32) * 2
    k, v = (rng.standard_normal((Bk, H, S, 64)).astype(np.float32) * 2 for _ in range(2))
    want = _attention64(q.reshape(Bk, R, H, 64).transpose(0, 2, 1, 3), k, v)
    want = want.transpose(0, 2, 1, 3).reshape(Bk * R, 1, 64 * H)
    twin = _twin(q, k, v, H).reshape(want.shape)
    steps = []
    step = kernels._step
    monkeypatch.setattr(kernels, "_step", lambda *a: steps.append(1) or step(*a))
    got = att.attention(mx.array(q) + 0, mx.array(k), mx.array(v), H)
    assert np.abs(np.array(got) - want).max() < 2e-5
    assert np.abs(np.array(got) - twin).max() < 5e-5  # the twin's own error is larger
    if R == 1:  # a beam's self-attention cache: the last key and value appended
        cache = att.KVCache.of(mx.array(k[:, :, :-1]), mx.array(v[:, :, :-1]))
        cache = cache.append(mx.array(k[:, :, -1:]), mx.array(v[:, :, -1:]))
        assert cache.length == S and cache.keys.shape[2] > S  # room for the next steps
        got = att.attention(mx.array(q) + 0, cache, None, H)
        assert np.abs(np.array(got) - want).max() < 2e-5
    assert len(steps) == (2 if R == 1 else 1)  # the kernel answered, not the twin


def test_kv_cache_grows_reorders_and_keeps_older_values():
    """`KVCache` past its first capacity, beam reorders with repeated rows and a repeat,
    against NumPy concatenation and indexing; an older value still reads its own positions."""
    from mlx_audio_stack.models.whisper.attention import KVCache

    rng = np.random.default_rng(0)
    k = rng.standard_normal((3, 2, 5, 64)).astype(np.float32)
    cache = KVCache.of(mx.array(k), mx.array(k + 1))
    for step in range(200):
        kn = rng.standard_normal((3, 2, 1, 64)).astype(np.float32)
        old, old_k = cache, k
        cache = cache.append(mx.array(kn), mx.array(kn + 1))
        k = np.concatenate([k, kn], axis=2)
        if step % 50 == 0:
            assert np.array_equal(np.array(old.filled()[0]), old_k)  # unchanged by the append
            src = [2, 2, 0]
            cache = cache.take(mx.array(src))
            k = k[src]
    assert cache.length == 205 and cache.keys.shape[2] >= 205
    keys, values = cache.filled()
    assert np.array_equal(np.array(keys), k) and np.array_equal(np.array(values), k + 1)
    assert np.array_equal(np.array(cache.repeat(2).filled()[0]), np.repeat(k, 2, axis=0))


@linux
@pytest.mark.parametrize(("rows", "cols"), [(1, 7), (3, 384), (1500, 512), (4, 1000)])
def test_layer_norm_equals_float64(rows, cols):
    """The layer norm against float64 and its twin `mx.fast.layer_norm`, rows off the vector
    width and the thread split, rows with a large offset (mean subtracted before the
    variance)."""
    _lib()
    from mlx_audio_stack.kernels.elementwise import layer_norm

    rng = np.random.default_rng(cols)
    x = (rng.standard_normal((rows, cols)) * 3 + 100).astype(np.float32)
    w, b = (rng.standard_normal(cols).astype(np.float32) for _ in range(2))
    got = np.array(layer_norm(mx.array(x), mx.array(w), mx.array(b), 1e-5))
    x64 = x.astype(np.float64)
    mu, var = x64.mean(axis=1, keepdims=True), x64.var(axis=1, keepdims=True)
    want = (x64 - mu) / np.sqrt(var + 1e-5) * w + b
    assert np.abs(got - want).max() < 1e-4 * (1 + np.abs(want).max())
    twin = np.array(mx.fast.layer_norm(mx.array(x), mx.array(w), mx.array(b), 1e-5))
    assert np.abs(got - twin).max() < 1e-4 * (1 + np.abs(want).max())


_FALLBACK = """
import warnings, mlx_audio_stack, mlx.core as mx
from mlx_audio_stack.kernels import library
from mlx_audio_stack.kernels.elementwise import gelu_, softmax_
x = mx.array([[0.5, -1.0, 2.0]])
with warnings.catch_warnings(record=True) as seen:
    warnings.simplefilter("always")
    for _ in range(3):
        a, b = softmax_(x + 0), gelu_(x + 0)
print(len([w for w in seen if "CPU kernels unavailable" in str(w.message)]))
print(library.library() is None, str(seen[0].message) if seen else "")
print(abs(float(a.sum()) - 1.0) < 1e-6)
"""


@linux
def test_a_failed_build_warns_once_and_runs_the_plain_path(tmp_path):
    """CC names no compiler and the cache is empty: importing compiles nothing, the first
    kernel use warns once (not once per call), naming the reason, and the MLX twins run."""
    if library.turned_off():
        pytest.skip("MAS_GEMV=off: no kernel is asked for")
    env = dict(os.environ, CC=str(tmp_path / "no-such-cc"), XDG_CACHE_HOME=str(tmp_path))
    env["TMPDIR"] = str(tmp_path)  # the second cache folder: empty too
    out = subprocess.run([sys.executable, "-c", _FALLBACK], env=env, capture_output=True,
                         text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    count, missing, ok = out.stdout.strip().splitlines()
    assert count == "1"
    assert (
        missing.startswith("True") and "no C compiler found" in missing and "no-such-cc" in missing
    )
    assert ok == "True"
    assert not list(tmp_path.glob("**/kernels-*.so"))  # nothing was built


@linux
def test_import_compiles_nothing(tmp_path):
    """With an empty cache, `import mlx_audio_stack` and MLX's products build no library (the
    products then go to the BLAS); `mas setup` builds it, and the next process loads it
    before MLX."""
    if build.c_compiler() is None or library.turned_off():
        pytest.skip("no C compiler, or MAS_GEMV=off")
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path), TMPDIR=str(tmp_path))
    code = (
        "import mlx_audio_stack, mlx.core as mx; from mlx_audio_stack.kernels import library; "
        "mx.eval(mx.ones((1, 8)) @ mx.ones((8, 8))); print(library.early(), library.forwarded())"
    )
    run = lambda *cmd: subprocess.run([sys.executable, *cmd], env=env, capture_output=True,  # noqa: E731
                                      text=True, timeout=300)  # fmt: skip
    first = run("-c", code)
    assert first.returncode == 0, first.stderr[-2000:]
    assert first.stdout.split() == ["False", "0"]
    assert not list(tmp_path.glob("**/kernels-*.so"))
    setup = run("-m", "mlx_audio_stack", "setup")
    assert setup.returncode == 0, setup.stderr[-2000:]
    assert len(list(tmp_path.glob("**/kernels-*.so"))) == 1
    second = run("-c", code)
    assert second.stdout.split() == ["True", "1"], second.stderr[-2000:]
