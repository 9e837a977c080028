"""MossFormer2's depthwise/element-wise kernels (`kernels/depthwise.py`) and the voice
encoder's LSTM recurrence (`kernels/lstm.py`), each against its MLX twin (the model's own MLX
formulation, what a Mac runs) and against that twin run in float64."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

from mlx_audio_stack.kernels import depthwise, lstm

rng = np.random.default_rng(0)


def _both(fn, *arrays, monkeypatch):
    """fn on float32 arrays with the kernels, with the twin forced, and on float64 arrays."""
    f32 = [mx.array(a.astype(np.float32)) for a in arrays]
    got = np.array(fn(*f32))
    with monkeypatch.context() as mp:
        mp.setattr(depthwise, "MIN_SIZE", 1 << 40)  # the MLX formulations
        twin = np.array(fn(*f32))
    want = np.array(fn(*(mx.array(a, dtype=mx.float64) for a in arrays)))
    return got, twin, want


def _close(got, twin, want, atol):
    assert got.dtype == np.float32 and got.shape == want.shape
    assert np.abs(got - want).max() < atol, np.abs(got - want).max()
    assert np.abs(got - twin).max() < atol, np.abs(got - twin).max()


def _kernels_or_skip():
    if not depthwise.applies(mx.zeros((depthwise.MIN_SIZE,), mx.float32)):
        pytest.skip("the CPU kernels are off here (MAS_GEMV=off or not MLX's CPU backend)")


def test_float64_takes_the_twin():
    assert not depthwise.applies(mx.zeros((depthwise.MIN_SIZE,), mx.float64))


@pytest.mark.parametrize(("k", "g", "dil"), [(17, 1, 1), (39, 2, 2)])
def test_grouped_conv_kernel(monkeypatch, k, g, dil):
    """PyTorch-grouped convolution (one output per group of g inputs), dilated, 'same' pad."""
    _kernels_or_skip()
    from mlx_audio_stack.models.mossformer2.layers import depthwise_conv

    pad = (k - 1) * dil // 2
    x, w = rng.standard_normal((1, 300, 256 * g)), rng.standard_normal((256, k, g)) * 0.3
    fn = lambda xm, wm: depthwise_conv(xm, wm, pad, pad, dil)  # noqa: E731
    _close(*_both(fn, x, w, monkeypatch=monkeypatch), atol=2e-5)


def test_silu_conv_residual_and_gate_kernels(monkeypatch):
    """`FFConvM`'s SiLU + depthwise conv + residual pass, and the gated attention's gate."""
    _kernels_or_skip()
    from mlx_audio_stack.models.mossformer2.layers import FFConvM, gate, silu

    ff = FFConvM(512, 256, "scalenorm")
    ff.mdl[3].sequential[1].conv.weight = mx.array(rng.standard_normal((256, 17, 1)) * 0.3)
    ff.set_dtype(mx.float32)

    def conv_block(xm):
        ff.set_dtype(xm.dtype)
        return ff(xm)

    x = rng.standard_normal((1, 300, 512))
    _close(*_both(conv_block, x, monkeypatch=monkeypatch), atol=5e-5)
    att, hid = rng.standard_normal((1, 300, 1024)), rng.standard_normal((1, 300, 1024))
    _close(*_both(gate, att, hid, monkeypatch=monkeypatch), atol=2e-5)
    _close(*_both(silu, x * 10, monkeypatch=monkeypatch), atol=2e-5)


def test_lstm_kernel_against_twin_and_float64():
    """The C recurrence (3 layers, 256 wide, batch 3) against `lstm_last_hidden_mlx` in float32
    and in float64."""
    from mlx_audio_stack.models.voice_encoder.model import LSTM, lstm_last_hidden_mlx

    if not lstm.applies(mx.zeros((1,), mx.float32)):
        pytest.skip("the CPU kernels are off here (MAS_GEMV=off, no C compiler, not Linux)")
    net = LSTM(40, 256, 3)
    net.update({k: mx.array(rng.standard_normal(v.shape).astype(np.float32) * 0.1)
                for k, v in net.parameters().items()})  # fmt: skip
    x = rng.uniform(0, 4, (3, 160, 40)).astype(np.float32)
    got = lstm.last_hidden(lstm.weights_of(net), x)
    twin = np.array(lstm_last_hidden_mlx(net, mx.array(x)))
    net.set_dtype(mx.float64)
    want = np.array(lstm_last_hidden_mlx(net, mx.array(x, dtype=mx.float64)))
    _close(got, twin, want, atol=5e-6)
