"""The Linux BLAS preload and the few-row product kernels that take MLX's sgemm calls of up to
eight rows (`_gemv.c`)."""

from __future__ import annotations

import ctypes
import math
import os
import subprocess
import sys
import time

import mlx.core as mx
import numpy as np
import pytest

from mlx_audio_stack import _blas

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux-only BLAS preload")


def _forward_or_skip():
    if _blas.loaded is None:
        pytest.skip("no optimized BLAS loaded (tools/install_blas.sh installs OpenBLAS)")
    if _blas.gemv_forward is None:
        pytest.skip("the few-row kernels are off: no C compiler, or MAS_GEMV=off")


@linux
def test_blas_and_forward_are_loaded_where_the_setup_installs_them():
    assert _blas.loaded is not None  # the setup commands install OpenBLAS
    if _blas.gemv_turned_off():
        pytest.skip("MAS_GEMV turns the forward off")
    if _blas.c_compiler() is None:
        pytest.skip("no C compiler: the forward is skipped by design")
    assert _blas.gemv_forward is not None  # a compiler is there: the forward must build


@linux
@pytest.mark.parametrize(
    ("rows", "K", "N"),
    [
        (1, 37, 301),  # small: the calling thread alone
        (2, 37, 301),
        (7, 37, 301),
        (9, 37, 301),  # over eight rows: the BLAS's sgemm
        (1, 1029, 4099),  # split over the threads; K and N off every block size
        (5, 384, 51864),  # a tiny.en beam step's output projection
        (8, 3001, 700),  # op(A) packed on the heap
    ],
)
def test_few_row_products_equal_numpy(rows, K, N):
    """Every layout MLX hands to sgemm with a few rows: weight stored (N, K) or (K, N), a
    transposed left operand, batched products, addmm's beta, odd sizes."""
    _forward_or_skip()
    rng = np.random.default_rng(rows)
    x = rng.standard_normal((rows, K)).astype(np.float32)
    w = rng.standard_normal((N, K)).astype(np.float32)
    c = rng.standard_normal((rows, N)).astype(np.float32)
    xm, wm = mx.array(x), mx.array(w)
    cases = {
        "x @ w.T": (xm @ wm.T, x @ w.T),
        "x @ w.T contiguous": (xm @ mx.contiguous(wm.T), x @ w.T),
        "transposed x": (mx.contiguous(xm.T).T @ wm.T, x @ w.T),
        "addmm": (mx.addmm(mx.array(c), xm, wm.T, alpha=0.5, beta=2.0), 0.5 * x @ w.T + 2 * c),
        "batched": (mx.stack([xm, 2 * xm]) @ wm.T, np.stack([x, 2 * x]) @ w.T),
    }
    before = _blas.gemv_forwarded()
    for name, (got, want) in cases.items():
        want64 = np.asarray(want, np.float64)
        err = np.abs(np.array(got) - want64).max() / np.abs(want64).max()
        assert err < 1e-5, f"{name}: relative error {err:.1e}"
    if rows <= _blas.GEMV_ROWS:
        assert _blas.gemv_forwarded() > before  # MLX's calls really went through the kernels
    else:
        assert _blas.gemv_forwarded() == before  # and larger products did not


@linux
def test_a_rows_result_does_not_depend_on_the_rows_beside_it():
    """Beam search computes five rows at once, greedy decoding one: the same row must give the
    same bits either way, and whether or not the product was split over threads."""
    _forward_or_skip()
    rng = np.random.default_rng(0)
    x = mx.array(rng.standard_normal((8, 384)).astype(np.float32))
    for w in (rng.standard_normal((1536, 384)), rng.standard_normal((384, 51864))):
        wm = mx.array(w.astype(np.float32))
        b = wm.T if w.shape[1] == 384 else wm  # (N, K) as nn.Linear stores it, and (K, N)
        alone = np.array(x[:1] @ b)
        for rows in (2, 5, 8):
            assert np.array_equal(np.array(x[:rows] @ b)[:1], alone)
        small = np.array(x[:1] @ b[:, :64])  # too small to split: the calling thread alone
        assert np.array_equal(small, alone[:, :64])


def _sgemm_rows(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """x @ w.T through the kernels' cblas_sgemm, called directly (no MLX)."""
    f = _blas.gemv_forward.cblas_sgemm
    f.restype = None
    ptr, i, fl = ctypes.c_void_p, ctypes.c_int, ctypes.c_float
    f.argtypes = [i, i, i, i, i, i, fl, ptr, i, ptr, i, fl, ptr, i]
    (m, k), n = x.shape, w.shape[0]
    out = np.empty((m, n), np.float32)
    f(101, 111, 112, m, n, k, 1.0, x.ctypes.data, k, w.ctypes.data, k, 0.0, out.ctypes.data, n)
    return out


@linux
def test_kernels_work_in_a_forked_child():
    """fork() copies no threads: a child of a process whose kernel threads already ran must
    start its own, not wait forever for workers that do not exist. (MLX itself cannot run in
    a forked child, its stream thread is gone too, so the kernels are called directly.)"""
    _forward_or_skip()
    x, w = np.ones((2, 512), np.float32), np.ones((4096, 512), np.float32)
    assert _sgemm_rows(x, w).min() == 512.0  # big enough to start the parent's threads
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: compute, report, leave without running pytest's teardown
        try:
            os.write(write, b"ok" if _sgemm_rows(x, w).min() == 512.0 else b"wrong")
        finally:
            os._exit(0)
    os.close(write)
    deadline = time.monotonic() + 60
    while not os.waitpid(pid, os.WNOHANG)[0]:
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung in a few-row product")
        time.sleep(0.05)
    assert os.read(read, 16) == b"ok"


@linux
def test_uninitialised_output_is_not_read():
    """beta = 0: the output buffer MLX hands over may hold NaN from earlier use."""
    _forward_or_skip()
    for _ in range(20):
        junk = mx.full((1, 4096), float("nan"))
        mx.eval(junk)
        del junk  # its buffer goes back to MLX's cache, the next output may reuse it
        x, w = mx.ones((1, 64)), mx.ones((4096, 64))
        assert np.array(x @ w.T).tolist() == [[64.0] * 4096]


@linux
def test_forward_can_be_turned_off():
    env = dict(os.environ, MAS_GEMV="off")
    code = (
        "import mlx_audio_stack, mlx.core as mx; from mlx_audio_stack import _blas; "
        "mx.eval(mx.ones((1, 8)) @ mx.ones((8, 8))); "
        "print(_blas.gemv_forward is None, _blas.gemv_forwarded())"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "0"]


@linux
@pytest.mark.parametrize(("rows", "cols"), [(1, 1), (3, 15), (5, 16), (7, 17), (9000, 1500)])
def test_softmax_rows_equals_float64(rows, cols):
    """`_gemv.c`'s in-place softmax (vectorised exp, one pass per row) against float64, with
    row tails off the vector width and a size that splits over the threads; rows spanning
    more than exp's range (their small entries must come out ~0, not garbage)."""
    _forward_or_skip()
    rng = np.random.default_rng(cols)
    x = (rng.standard_normal((rows, cols)) * 8).astype(np.float32)
    x[0, :] -= np.linspace(0, 200, cols, dtype=np.float32)  # e^-200 underflows float32
    got = x.copy()
    _blas.elementwise().mas_softmax_rows(got.ctypes.data, rows, cols)
    x64 = x.astype(np.float64)
    e = np.exp(x64 - x64.max(axis=1, keepdims=True))
    want = e / e.sum(axis=1, keepdims=True)
    big = want > 1e-3
    from mlx_audio_stack.models.whisper.cpu_ops import _softmax_rows

    numpy_path = x.copy()  # the fallback where `_gemv.c` cannot be built
    _softmax_rows(numpy_path)
    for out in (got, numpy_path):
        assert np.abs(out - want).max() < 2e-6
        assert (np.abs(out - want) / np.where(big, want, 1))[big].max() < 2e-6


@linux
@pytest.mark.parametrize("n", [1, 17, 1024, 1500 * 1536 + 3])
def test_gelu_equals_exact_erf_gelu(n):
    """`_gemv.c`'s in-place GELU (A&S 7.1.26 erf, as cpu_ops' NumPy path) against the exact
    erf GELU in float64 and against the NumPy path, with tails and a threaded size."""
    _forward_or_skip()
    rng = np.random.default_rng(n)
    x = (rng.standard_normal(n) * 4).astype(np.float32)
    x[: min(n, 6)] = [0.0, -0.0, 1e-8, -30.0, 30.0, -5.0][: min(n, 6)]
    got = x.copy()
    _blas.elementwise().mas_gelu(got.ctypes.data, n)
    x64 = x.astype(np.float64)
    erf = np.vectorize(math.erf)
    exact = 0.5 * x64 * (1 + erf(x64 / math.sqrt(2)))
    bound = 3e-7 + 2.5e-7 * np.abs(x64)  # erf's 1.5e-7 times |x| / 2, and float32 rounding
    assert np.all(np.abs(got - exact) <= bound)
    from mlx_audio_stack.models.whisper.cpu_ops import _gelu_block

    numpy_path = x.copy()
    _gelu_block(numpy_path)
    assert np.all(np.abs(got - numpy_path) <= bound)


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
    """`_gemv.c`'s fused attention (Whisper's encoder): query blocks off the block size (48)
    and the tile sizes, keys off the panel width (32), one key, one head, batches, and the
    encoder's full size split over the threads; the result lands in q's buffer."""
    _forward_or_skip()
    from mlx_audio_stack.models.whisper.cpu_ops import attention_

    rng = np.random.default_rng(T)
    q, k, v = (rng.standard_normal((B, n, 64 * H)).astype(np.float32) * 2 for n in (T, S, S))
    qm = mx.array(q) + 0  # fresh: the result overwrites it
    want = _attention64(_heads(q, H), _heads(k, H), _heads(v, H)).transpose(0, 2, 1, 3)
    if T * S < 1 << 16:  # below that size the model keeps MLX's path: call the kernel itself
        qa = np.ascontiguousarray(q)
        C = 64 * H
        args = (B, T, S, H, C, C, C, T * C, S * C, S * C, 0.125)
        assert (
            _blas.elementwise().mas_attention(qa.ctypes.data, k.ctypes.data, v.ctypes.data, *args)
            == 0
        )
        got = qa
    else:
        got = np.array(attention_(qm, mx.array(k), mx.array(v), H))
    assert np.abs(got - want.reshape(got.shape)).max() < 2e-5


@linux
@pytest.mark.parametrize(("Bk", "R", "S", "H"), [(1, 5, 1500, 6), (5, 1, 151, 6), (2, 3, 17, 8)])
def test_step_attention_equals_float64(Bk, R, S, H):
    """A decoding step's attention in `_gemv.c`: R query rows per cache (the beams of one audio
    over its cross-attention keys, or one row per beam's own cache), rows off the 4-row
    output tile, caches contiguous or in a `StepCache` with room to spare."""
    _forward_or_skip()
    from mlx_audio_stack.models.whisper.cpu_ops import StepCache, attention_step

    rng = np.random.default_rng(S)
    q = rng.standard_normal((Bk * R, 1, 64 * H)).astype(np.float32) * 2
    k, v = (rng.standard_normal((Bk, H, S, 64)).astype(np.float32) * 2 for _ in range(2))
    want = _attention64(q.reshape(Bk, R, H, 64).transpose(0, 2, 1, 3), k, v)
    want = want.transpose(0, 2, 1, 3).reshape(Bk * R, 1, 64 * H)
    got = attention_step(mx.array(q) + 0, mx.array(k), mx.array(v), H)
    assert np.abs(np.array(got) - want).max() < 2e-5
    if R == 1:  # a beam's self-attention cache: the last key and value appended in place
        cache = StepCache(mx.array(k[:, :, :-1]), mx.array(v[:, :, :-1]))
        assert cache.k_np.shape[2] > S  # room for the next steps
        last = lambda a: mx.array(a[:, :, -1:].transpose(0, 2, 1, 3).reshape(Bk, 1, 64 * H))  # noqa: E731
        cache.append(last(k), last(v))
        assert cache[0].shape == (Bk, H, S, 64)
        got = attention_step(mx.array(q) + 0, cache, None, H)
        assert np.abs(np.array(got) - want).max() < 2e-5


@linux
def test_step_cache_grows_and_reorders_like_a_gather():
    """`StepCache` past its first capacity, and a beam reorder with repeated rows, against
    plain NumPy concatenation and indexing."""
    _forward_or_skip()
    from mlx_audio_stack.models.whisper.cpu_ops import StepCache

    rng = np.random.default_rng(0)
    k = rng.standard_normal((3, 2, 5, 64)).astype(np.float32)
    v = k + 1
    cache = StepCache(mx.array(k), mx.array(v))
    for step in range(200):
        kn = rng.standard_normal((3, 1, 128)).astype(np.float32)
        cache.append(mx.array(kn), mx.array(kn + 1))
        k = np.concatenate([k, kn.reshape(3, 1, 2, 64).transpose(0, 2, 1, 3)], axis=2)
        if step % 50 == 0:
            src = [2, 2, 0]
            cache.reorder(src)
            k = k[src]
    assert cache.length == 205 and cache.k_np.shape[2] >= 205
    assert np.array_equal(np.array(cache[0]), k)
    assert np.array_equal(np.array(cache[1]), k + 1)


@linux
@pytest.mark.parametrize(("rows", "cols"), [(1, 7), (3, 384), (1500, 512), (4, 1000)])
def test_layer_norm_equals_float64(rows, cols):
    """`_gemv.c`'s layer norm against float64, rows off the vector width and the thread split,
    rows with a large offset (mean subtracted before the variance)."""
    _forward_or_skip()
    from mlx_audio_stack.models.whisper.cpu_ops import layer_norm

    rng = np.random.default_rng(cols)
    x = (rng.standard_normal((rows, cols)) * 3 + 100).astype(np.float32)
    w, b = (rng.standard_normal(cols).astype(np.float32) for _ in range(2))
    got = np.array(layer_norm(mx.array(x), mx.array(w), mx.array(b), 1e-5))
    x64 = x.astype(np.float64)
    mu, var = x64.mean(axis=1, keepdims=True), x64.var(axis=1, keepdims=True)
    want = (x64 - mu) / np.sqrt(var + 1e-5) * w + b
    assert np.abs(got - want).max() < 1e-4 * (1 + np.abs(want).max())
