"""The Linux BLAS preload and the few-row product kernels that take MLX's sgemm calls of up to
eight rows (kernels/c/products.c, loaded before MLX when built)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import mlx.core as mx
import numpy as np
import pytest

from mlx_audio_stack import _blas
from mlx_audio_stack.kernels import build, library

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux-only BLAS preload")


def _forward_or_skip():
    if _blas.loaded is None:
        pytest.skip("no optimized BLAS loaded (tools/install_blas.sh installs OpenBLAS)")
    if not library.early():
        pytest.skip("the few-row kernels are off: no C compiler, or MAS_GEMV=off")


@linux
def test_blas_and_forward_are_loaded_where_the_setup_installs_them():
    assert _blas.loaded is not None  # the setup commands install OpenBLAS
    if library.turned_off():
        pytest.skip("MAS_GEMV turns the forward off")
    if build.c_compiler() is None:
        pytest.skip("no C compiler: the kernels cannot be built")
    assert library.early()  # built (conftest, as `mas setup` does): loaded before MLX


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
    before = library.forwarded()
    for name, (got, want) in cases.items():
        want64 = np.asarray(want, np.float64)
        err = np.abs(np.array(got) - want64).max() / np.abs(want64).max()
        assert err < 1e-5, f"{name}: relative error {err:.1e}"
    if rows <= library.GEMV_ROWS:
        assert library.forwarded() > before  # MLX's calls really went through the kernels
    else:
        assert library.forwarded() == before  # and larger products did not


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
    f = library.library().cblas_sgemm
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
        "import mlx_audio_stack, mlx.core as mx; from mlx_audio_stack.kernels import library; "
        "mx.eval(mx.ones((1, 8)) @ mx.ones((8, 8))); "
        "print(library.library() is None, library.forwarded())"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "0"]
