"""ECAPA's CPU kernels (`mlx_audio_stack/kernels/conv.py`), each against its MLX twin (the
layer's own MLX code, what a Mac runs) and against the twin in float64, on a small random
model in the checkpoint layout: TDNN blocks (k > 1 with per-utterance reflection), a Res2Net
block, SE scaling + residual, attentive pooling with and without global context and a mask."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
from mlx.utils import tree_flatten

from mlx_audio_stack.kernels import conv as kconv
from mlx_audio_stack.models.ecapa.model import ECAPA_TDNN, EcapaArgs, Lengths

ARGS = EcapaArgs(input_size=20, channels=[32, 48, 48, 48, 96], kernel_sizes=[5, 3, 3, 3, 1],
                 dilations=[1, 2, 3, 4, 1], attention_channels=16, lin_neurons=12,
                 res2net_scale=4, se_channels=8)  # fmt: skip


def _model(global_context: bool, dtype=mx.float32) -> ECAPA_TDNN:
    rng = np.random.default_rng(1)
    args = EcapaArgs(**{**ARGS.__dict__, "global_context": global_context})
    model = ECAPA_TDNN(args)
    w = []
    for k, v in tree_flatten(model.parameters()):
        a = rng.standard_normal(v.shape) * 0.3
        if k.endswith("running_var"):
            a = rng.uniform(0.5, 2.0, v.shape)
        w.append((k, mx.array(a.astype(np.float32))))
    model.load_weights(w)
    if dtype != mx.float32:
        model.set_dtype(dtype)
        model.prepare()  # the cached matrices and BatchNorm affines in that dtype too
    return model


def _kernels_or_skip():
    if not kconv.applies(mx.zeros((1,), mx.float32)):
        pytest.skip("ECAPA's kernels do not run here (MAS_GEMV=off, not Linux, no C compiler)")


def _three(fn, x32: np.ndarray, monkeypatch, gc: bool = True):
    """fn(model, x) with the kernels, with the twin (kernels off) and with the twin in float64."""
    m32 = _model(gc)
    got = np.array(fn(m32, mx.array(x32)))
    with monkeypatch.context() as mp:
        mp.setattr(kconv, "applies", lambda x: False)
        twin = np.array(fn(m32, mx.array(x32)))
    m64 = _model(gc, mx.float64)
    want = np.array(fn(m64, mx.array(x32, dtype=mx.float64)))
    return got, twin, want


def _close(got, twin, want, rel=2e-5):
    scale = np.abs(want).max()
    assert got.dtype == np.float32 and want.dtype == np.float64 and got.shape == want.shape
    assert np.abs(got - want).max() <= rel * scale, np.abs(got - want).max() / scale
    assert np.abs(got - twin).max() <= 2 * rel * scale, np.abs(got - twin).max() / scale


FRAMES = np.array([70, 41, 9])
MASK = mx.array(np.arange(70)[None] < FRAMES[:, None])


@pytest.mark.parametrize("frames", [None, FRAMES], ids=["tensor-end", "own-end"])
@pytest.mark.parametrize("block", [0, 2])
def test_tdnn_kernel(monkeypatch, block, frames):
    """A TDNN block: k = 5 on the features, the SE-Res2Net block's 1x1 TDNN; reflection at the
    tensor's end or at each utterance's own."""
    _kernels_or_skip()
    rng = np.random.default_rng(block)
    cin = ARGS.input_size if block == 0 else ARGS.channels[1]
    x = rng.standard_normal((3, 70, cin)).astype(np.float32)

    def fn(m, xm):
        lens = Lengths(70, None, frames)
        return m.blocks[0](xm, lens) if block == 0 else m.blocks[block].tdnn1(xm, lens)

    _close(*_three(fn, x, monkeypatch))


@pytest.mark.parametrize("frames", [None, FRAMES], ids=["tensor-end", "own-end"])
def test_res2net_kernel(monkeypatch, frames):
    _kernels_or_skip()
    x = np.random.default_rng(5).standard_normal((3, 70, 48)).astype(np.float32)
    fn = lambda m, xm: m.blocks[2].res2net_block(xm, Lengths(70, None, frames))  # noqa: E731
    _close(*_three(fn, x, monkeypatch))


@pytest.mark.parametrize("mask", [None, MASK], ids=["all", "masked"])
def test_se_residual_kernel(monkeypatch, mask):
    """The whole SE-Res2Net block (its TDNNs, Res2Net, SE scaling and residual), the SE means
    over all frames or over each utterance's own."""
    _kernels_or_skip()
    x = np.random.default_rng(6).standard_normal((3, 70, 32)).astype(np.float32)
    fn = lambda m, xm: m.blocks[1](xm, Lengths(70, mask, None))  # noqa: E731  (32 -> 48: shortcut)
    _close(*_three(fn, x, monkeypatch))
    loud = x * 1e4  # |SE logits| large: a naive sigmoid would overflow
    got, twin, want = _three(fn, loud, monkeypatch)
    assert np.isfinite(got).all()
    _close(got, twin, want, rel=1e-4)


@pytest.mark.parametrize("gc", [True, False], ids=["global-context", "local"])
@pytest.mark.parametrize("mask", [None, MASK], ids=["all", "masked"])
def test_attentive_pool_kernel(monkeypatch, gc, mask):
    _kernels_or_skip()
    x = np.random.default_rng(7).standard_normal((3, 70, 96)).astype(np.float32)
    fn = lambda m, xm: m.asp(xm, Lengths(70, mask, None))  # noqa: E731
    _close(*_three(fn, x, monkeypatch, gc))


def test_whole_model_kernels_equal_twin_and_float64(monkeypatch):
    """The whole pass: every kernel at once, lengths exact (mask + frames)."""
    _kernels_or_skip()
    x = np.random.default_rng(8).standard_normal((3, 70, ARGS.input_size)).astype(np.float32)
    calls = []
    for name in ("tdnn", "res2net", "se_residual", "attentive_pool"):  # count: they really ran
        fn = getattr(kconv, name)
        monkeypatch.setattr(
            kconv, name, lambda *a, _f=fn, _n=name, **k: calls.append(_n) or _f(*a, **k)
        )
    fn = lambda m, xm: m(xm, MASK, FRAMES)  # noqa: E731
    _close(*_three(fn, x, monkeypatch), rel=5e-5)
    n = len(ARGS.channels) - 2  # SE-Res2Net blocks
    assert sorted(set(calls)) == ["attentive_pool", "res2net", "se_residual", "tdnn"]
    assert calls.count("tdnn") == 2 + 2 * n and calls.count("res2net") == n


def test_an_input_of_the_wrong_width_is_an_error_not_a_read_past_its_end(monkeypatch):
    """Features of half the width the model was built for (40 mel bands into an 80-band
    model: a SpeakerEncoder built with the default FbankArgs around real-size ECAPA). MLX's
    matmul refuses it; the C passes indexed by the weights' shapes and read past the input."""
    _kernels_or_skip()
    m = _model(True)
    x = mx.array(np.zeros((1, 50, ARGS.input_size // 2), np.float32))
    with pytest.raises(ValueError, match="width"):
        m.blocks[0](x, Lengths(50))
    with monkeypatch.context() as mp:  # the twin (what a Mac runs) refuses it too
        mp.setattr(kconv, "applies", lambda x: False)
        with pytest.raises(ValueError):
            mx.eval(m.blocks[0](x, Lengths(50)))
