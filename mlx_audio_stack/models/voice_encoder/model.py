"""Resemblyzer's GE2E speaker encoder (`resemblyzer.VoiceEncoder`, Apache-2.0) in MLX.

Reference: resemblyzer 0.1.4 `voice_encoder.py` + `hparams.py` (a 3-layer `torch.nn.LSTM` of
256 over 40-band mel frames, `batch_first=True`; the last layer's final hidden state -> Linear
256 -> ReLU -> L2 norm). Tensor layout here: channels last, mels (B, T, n_mels).

Checkpoint keys load as they are (`lstm.weight_ih_l{k}` (4H, in), `lstm.weight_hh_l{k}` (4H, H),
`lstm.bias_ih_l{k}`, `lstm.bias_hh_l{k}` (4H,), gates stacked i, f, g, o as torch does;
`linear.weight` (256, 256), `linear.bias`). `VoiceEncoderNet.sanitize` only drops the GE2E loss's
`similarity_weight` / `similarity_bias`, which inference never uses.

The LSTM's recurrence is sequential in time; its input projections are one product over all
time steps. `lstm_last_hidden` picks where the recurrence runs: `kernels/lstm.py` (a C loop per
layer, `kernels/c/lstm.c`) on MLX's CPU backend on Linux, else the MLX loop below (a Mac's GPU);
tests/test_voice_encoder_model.py compares the two.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import numpy as np


@dataclass
class VoiceEncoderArgs:
    """Mirrors resemblyzer's `hparams.py` (module constants there), field names as there."""

    mel_window_length: int = 25  # ms -> n_fft = 400 samples at 16 kHz
    mel_window_step: int = 10  # ms -> hop 160 samples
    mel_n_channels: int = 40
    sampling_rate: int = 16000
    partials_n_frames: int = 160  # 1.6 s partial utterances
    model_hidden_size: int = 256
    model_embedding_size: int = 256
    model_num_layers: int = 3

    def __post_init__(self) -> None:
        for name in ("mel_n_channels", "partials_n_frames", "model_hidden_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if int(self.model_num_layers) < 1 or int(self.model_embedding_size) < 1:
            raise ValueError("model_num_layers and model_embedding_size must be positive")

    @property
    def n_fft(self) -> int:
        return self.sampling_rate * self.mel_window_length // 1000  # 400

    @property
    def hop(self) -> int:
        return self.sampling_rate * self.mel_window_step // 1000  # 160


class LSTM(nn.Module):
    """torch.nn.LSTM(batch_first=True, bias=True) parameters under torch's names; the forward
    is `lstm_last_hidden` (the encoder needs only the last layer's final hidden state)."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int):
        super().__init__()
        self.hidden_size, self.num_layers = hidden_size, num_layers
        for k in range(num_layers):
            n_in = input_size if k == 0 else hidden_size
            setattr(self, f"weight_ih_l{k}", mx.zeros((4 * hidden_size, n_in)))
            setattr(self, f"weight_hh_l{k}", mx.zeros((4 * hidden_size, hidden_size)))
            setattr(self, f"bias_ih_l{k}", mx.zeros((4 * hidden_size,)))
            setattr(self, f"bias_hh_l{k}", mx.zeros((4 * hidden_size,)))

    def layer(self, k: int) -> tuple[mx.array, mx.array, mx.array]:
        """(W_ih (4H, in), W_hh (4H, H), b_ih + b_hh (4H,)) of layer k."""
        g = lambda n: getattr(self, f"{n}_l{k}")  # noqa: E731
        return g("weight_ih"), g("weight_hh"), g("bias_ih") + g("bias_hh")


def _cell(gates: mx.array, c: mx.array) -> tuple[mx.array, mx.array]:
    """One LSTM cell update from the summed gate pre-activations (B, 4H), torch's i, f, g, o."""
    i, f, g, o = mx.split(gates, 4, axis=-1)
    c = mx.sigmoid(f) * c + mx.sigmoid(i) * mx.tanh(g)
    return mx.sigmoid(o) * mx.tanh(c), c


_cell_compiled = mx.compile(_cell)


def lstm_last_hidden_mlx(lstm: LSTM, x: mx.array) -> mx.array:
    """x (B, T, in) -> the last layer's hidden state after the last step (B, H), zero initial
    state, in MLX ops (one product for every step's input projection, then the recurrence)."""
    b, t, _ = x.shape
    h_all = x
    for k in range(lstm.num_layers):
        w_ih, w_hh, bias = lstm.layer(k)
        xp = mx.addmm(bias, h_all, w_ih.T)  # (B, T, 4H)
        w_hh_t = w_hh.T  # (H, 4H)
        h = mx.zeros((b, lstm.hidden_size), x.dtype)
        c = mx.zeros((b, lstm.hidden_size), x.dtype)
        hs = []
        for s in range(t):
            h, c = _cell_compiled(xp[:, s] + h @ w_hh_t, c)
            hs.append(h)
        if k + 1 < lstm.num_layers:
            h_all = mx.stack(hs, axis=1)  # (B, T, H)
    return h


def lstm_last_hidden(lstm: LSTM, x: mx.array) -> mx.array:
    """The one dispatch: the CPU recurrence (`kernels.lstm`) where it applies, else MLX's."""
    from ...kernels import lstm as cpu_lstm

    if cpu_lstm.applies(x):
        return mx.array(cpu_lstm.last_hidden(cpu_lstm.weights_of(lstm), np.asarray(x)))
    return lstm_last_hidden_mlx(lstm, x)


class VoiceEncoderNet(nn.Module):
    """mels (B, T, n_mels) -> L2-normalised embeddings (B, model_embedding_size)."""

    def __init__(self, args: VoiceEncoderArgs):
        super().__init__()
        self.args = args
        self.lstm = LSTM(args.mel_n_channels, args.model_hidden_size, args.model_num_layers)
        self.linear = nn.Linear(args.model_hidden_size, args.model_embedding_size)

    def __call__(self, mels: mx.array) -> mx.array:
        h = lstm_last_hidden(self.lstm, mels)  # (B, H)
        e = nn.relu(self.linear(h))
        # resemblyzer divides by the norm with no epsilon: an all-zero ReLU output is NaN there
        return e / mx.linalg.norm(e, axis=-1, keepdims=True)

    def sanitize(self, weights: dict[str, Any]) -> dict[str, Any]:
        """resemblyzer's `checkpoint["model_state"]` -> MLX names: keys load as they are; the
        only deviation, the GE2E loss parameters, are dropped. Safe to run twice."""
        return {k: v for k, v in weights.items() if k not in DROPPED and not k.startswith("_")}


DROPPED = ("similarity_weight", "similarity_bias")  # GE2E loss scale and bias (training only)
