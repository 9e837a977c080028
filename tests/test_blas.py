"""The Linux BLAS preload and the sgemm -> sgemv forward for few-row products (`_gemv.c`)."""

from __future__ import annotations

import os
import subprocess
import sys

import mlx.core as mx
import numpy as np
import pytest

from mlx_audio_stack import _blas

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux-only BLAS preload")


def _forward_or_skip():
    if _blas.loaded is None:
        pytest.skip("no optimized BLAS loaded (tools/install_blas.sh installs OpenBLAS)")
    if _blas.gemv_forward is None:
        pytest.skip("the sgemv forward is off: no C compiler, or MAS_GEMV=off")


@linux
def test_blas_and_forward_are_loaded_where_the_setup_installs_them():
    assert _blas.loaded is not None  # the setup commands install OpenBLAS
    if _blas.gemv_turned_off():
        pytest.skip("MAS_GEMV turns the forward off")
    if _blas.c_compiler() is None:
        pytest.skip("no C compiler: the forward is skipped by design")
    assert _blas.gemv_forward is not None  # a compiler is there: the forward must build


@linux
@pytest.mark.parametrize("rows", [1, 2, 7])
def test_forwarded_products_equal_numpy(rows):
    """Every layout MLX hands to sgemm with a few rows: weight stored (N, K) or (K, N), a
    transposed left operand, batched products, addmm's beta, odd sizes."""
    _forward_or_skip()
    rng = np.random.default_rng(rows)
    K, N = 37, 301
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
        np.testing.assert_allclose(np.array(got), want, rtol=1e-5, atol=1e-4, err_msg=name)
    if rows <= _blas.GEMV_ROWS:
        assert _blas.gemv_forwarded() > before  # MLX's calls really went through the forward


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
