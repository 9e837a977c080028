"""The LSTM recurrence on MLX's CPU backend (Linux): a small C loop (`c/lstm.c`) per layer.

As MLX ops a recurrence step is a small product and ~10 element-wise ops, each a graph node
with its own dispatch; over 3 layers x 160 steps that overhead, not the arithmetic, was the
time. Per layer here:

- every step's input projection is one product over all steps and rows, onto the summed
  biases (`(T * B, in) @ (in, 4H)`, the BLAS);
- `c/lstm.c` runs the steps: `h @ W_hh^T` added in place into the step's slice (the process's
  `cblas_sgemm`, in column blocks that c/products.c computes on the calling thread), then the cell
  update with a vectorised tanh;
- the gates are reordered i, f, o, g and the sigmoid gates' weights halved once (exact in
  float32), so one tanh over the whole (B, 4H) block gives every gate: sigmoid(z) =
  0.5 + 0.5 tanh(z / 2).

It is part of the kernels library (build.py); where that is missing, or with MAS_GEMV=off, its
twin, the MLX recurrence (`model.lstm_last_hidden_mlx`), runs instead.
tests/test_voice_encoder_model.py compares the two; tests/test_voice_encoder_parity.py compares
both with resemblyzer.
Products go through `dispatch.gemm`, never NumPy's `@`.
"""

from __future__ import annotations

from dataclasses import dataclass

import mlx.core as mx
import numpy as np

from .dispatch import gemm, use_kernels
from .library import library


@dataclass
class LayerWeights:
    w_ih: np.ndarray  # (in, 4H), gate columns i, f, o, g, sigmoid gates halved
    w_hh: np.ndarray  # (H, 4H), same
    bias: np.ndarray  # (4H,), b_ih + b_hh, same


@dataclass
class CpuWeights:
    key: tuple[int, ...]  # ids of the MLX arrays they were made from
    layers: list[LayerWeights]
    hidden: int
    sources: tuple = ()  # those arrays, held so that their ids cannot be reused while cached


def applies(x: mx.array) -> bool:
    """On MLX's CPU backend, in float32, with the kernels library loaded."""
    return use_kernels(x) and library() is not None


def _reorder(w: np.ndarray, h: int) -> np.ndarray:
    """Rows i, f, g, o (torch) -> i, f, o, g with i, f, o halved."""
    i, f, g, o = (w[k * h : (k + 1) * h] for k in range(4))
    return np.concatenate([0.5 * i, 0.5 * f, 0.5 * o, g]).astype(np.float32)


def weights_of(lstm) -> CpuWeights:
    """The LSTM's weights in this layout, cached on the module until its arrays change."""
    arrays = []
    for k in range(lstm.num_layers):
        arrays += [getattr(lstm, f"{n}_l{k}") for n in ("weight_ih", "weight_hh")]
        arrays += [getattr(lstm, f"{n}_l{k}") for n in ("bias_ih", "bias_hh")]
    key = tuple(id(a) for a in arrays)
    cached = getattr(lstm, "_cpu_weights", None)
    if cached is not None and cached.key == key:
        return cached
    h = lstm.hidden_size
    layers = []
    for k in range(lstm.num_layers):
        w_ih, w_hh, b_ih, b_hh = (np.array(a, np.float32) for a in arrays[4 * k : 4 * k + 4])
        layers.append(
            LayerWeights(
                np.ascontiguousarray(_reorder(w_ih, h).T),
                np.ascontiguousarray(_reorder(w_hh, h).T),
                _reorder((b_ih + b_hh)[:, None], h)[:, 0].copy(),
            )
        )
    cached = CpuWeights(key, layers, h, tuple(arrays))
    object.__setattr__(lstm, "_cpu_weights", cached)  # a plain attribute, not a parameter
    return cached


def last_hidden(weights: CpuWeights, x: np.ndarray) -> np.ndarray:
    """x (B, T, in) float32 -> the last layer's final hidden state (B, H), zero initial state."""
    b, t, _ = x.shape
    h = weights.hidden
    lib = library()
    inp = np.ascontiguousarray(np.asarray(x, np.float32).transpose(1, 0, 2))  # (T, B, in)
    c = np.empty((b, h), np.float32)
    xp = np.empty((t, b, 4 * h), np.float32)  # gate pre-activations, step-major
    for n, lw in enumerate(weights.layers):
        ring = 2 if n + 1 == len(weights.layers) else t  # the last layer keeps two steps
        xp[:] = lw.bias
        k = inp.shape[-1]
        gemm(inp.reshape(t * b, k), k, k, lw.w_ih, xp.reshape(t * b, 4 * h), 4 * h, t * b, 1.0)
        hs = np.empty((ring, b, h), np.float32)
        ptrs = (a.ctypes.data for a in (xp, lw.w_hh, hs, c))
        lib.mas_lstm_layer(*ptrs, t, b, h, ring)
        inp = hs
    return np.array(inp[(t - 1) % len(inp)])
