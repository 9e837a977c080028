"""The LSTM recurrence on MLX's CPU backend: NumPy buffers, products through `cblas_sgemm`.

As MLX ops a recurrence step is a small product and ~10 element-wise ops, each a graph node
with its own allocation and dispatch; over 3 layers x 160 steps that overhead, not the
arithmetic, was the time (tools/bench_voice_encoder.py). Here, per layer:

- every step's input projection is one product over all steps and rows, onto the summed
  biases (`(T * B, in) @ (in, 4H)`);
- each step adds `h @ W_hh^T` in place into its slice (`cblas_sgemm` with beta 1: up to 8
  rows `_gemv.c`'s own threads, more the BLAS's), then updates the cell in place;
- the gates are reordered i, f, o, g and the sigmoid gates' weights halved once (exact in
  float32), so one `tanh` over the whole (B, 4H) block gives every gate: sigmoid(z) =
  0.5 + 0.5 tanh(z / 2).

Computes what `model.lstm_last_hidden_mlx` computes (tests/test_voice_encoder_model.py compares
the two; tests/test_voice_encoder_parity.py compares both with resemblyzer's torch LSTM).
NumPy's own `@` is never called: its BLAS's idle threads would spin against this one's.
"""

from __future__ import annotations

from dataclasses import dataclass

import mlx.core as mx
import numpy as np

from ... import _blas

ROW_MAJOR, NO_TRANS = 101, 111


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


def applies(x: mx.array) -> bool:
    """On MLX's CPU backend, in float32, with `_gemv.c` (and its `cblas_sgemm`) loaded."""
    return (
        mx.default_device() == mx.cpu and x.dtype == mx.float32 and _blas.elementwise() is not None
    )


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
    cached = CpuWeights(key, layers, h)
    object.__setattr__(lstm, "_cpu_weights", cached)  # a plain attribute, not a parameter
    return cached


# `_gemv.c` computes a product of up to GEMV_ROWS rows on the calling thread alone when its
# weight block has fewer than THREAD_MIN_ELEMS (65536) elements, else on its pool; a
# recurrence step's product split into column blocks below that stays on this thread: no
# hand-over and wait between threads at each of the 480 steps of a pass, which on a loaded
# machine (a descheduled worker) cost milliseconds per step.
STEP_COLS = 192  # columns per block: 192 x 256 = 49152 weight elements


def _gemm(a: np.ndarray, w: np.ndarray, out: np.ndarray, beta: float) -> None:
    """out (M, N) = a (M, K) @ w (K, N) (+ out when beta is 1); all C-contiguous float32."""
    m, k = a.shape
    n = w.shape[1]
    _blas.elementwise().cblas_sgemm(
        ROW_MAJOR, NO_TRANS, NO_TRANS, m, n, k, 1.0, a.ctypes.data, k, w.ctypes.data, n,
        beta, out.ctypes.data, n,
    )  # fmt: skip


def _gemm_step(a: np.ndarray, w: np.ndarray, out: np.ndarray) -> None:
    """out += a @ w for a recurrence step: column blocks on this thread (see STEP_COLS) when
    `_gemv.c` takes the rows, else one product for the BLAS."""
    m, k = a.shape
    n = w.shape[1]
    if m > _blas.GEMV_ROWS or k * STEP_COLS >= 65536:
        _gemm(a, w, out, 1.0)
        return
    sgemm = _blas.elementwise().cblas_sgemm
    pa, pw, po = a.ctypes.data, w.ctypes.data, out.ctypes.data
    for j in range(0, n, STEP_COLS):
        nj = min(STEP_COLS, n - j)
        sgemm(ROW_MAJOR, NO_TRANS, NO_TRANS, m, nj, k, 1.0, pa, k, pw + 4 * j, n, 1.0,
              po + 4 * j, n)  # fmt: skip


def last_hidden(weights: CpuWeights, x: np.ndarray) -> np.ndarray:
    """x (B, T, in) float32 -> the last layer's final hidden state (B, H), zero initial state."""
    b, t, _ = x.shape
    h = weights.hidden
    inp = np.ascontiguousarray(np.asarray(x, np.float32).transpose(1, 0, 2))  # (T, B, in)
    tmp = np.empty((b, h), np.float32)
    for n, lw in enumerate(weights.layers):
        last = n + 1 == len(weights.layers)
        xp = np.empty((t, b, 4 * h), np.float32)  # gate pre-activations, step-major
        xp[:] = lw.bias
        _gemm(inp.reshape(t * b, -1), lw.w_ih, xp.reshape(t * b, 4 * h), 1.0)
        hs = np.empty((2 if last else t, b, h), np.float32)  # the last layer keeps two steps
        c = np.zeros((b, h), np.float32)
        for s in range(t):
            g = xp[s]  # (B, 4H): i, f, o (halved), g
            h_prev = hs[(s - 1) % len(hs)]
            if s > 0:  # the initial state is zero: nothing to add at step 0
                _gemm_step(h_prev, lw.w_hh, g)
            np.tanh(g, out=g)
            sig = g[:, : 3 * h]
            sig *= 0.5
            sig += 0.5
            c *= sig[:, h : 2 * h]
            np.multiply(sig[:, :h], g[:, 3 * h :], out=tmp)
            c += tmp
            h_new = hs[s % len(hs)]
            np.tanh(c, out=h_new)
            h_new *= sig[:, 2 * h :]
        inp = hs
    return np.array(inp[(t - 1) % len(inp)])
