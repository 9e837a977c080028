"""NumPy kernels for MossFormer2's element-wise and depthwise parts on MLX's CPU device.

Why: on MLX's CPU backend (0.32), exp/sigmoid run scalar libm (a SiLU over 41 M floats took
1.45 s, numpy's SIMD exp 0.11 s; `mx.compile` does not vectorize them either), grouped
convolutions have no fast path (`mx.conv1d(groups=C)`: 4.3 s on (20000, 2048) with k=17,
torch 0.37 s), and each element-wise op streams the whole array through memory. Here a
depthwise convolution runs as K in-place multiply-adds over row blocks that stay in cache
(0.37 s for the same input), with the SiLU before it and the residual (folded into the centre
tap) in the same pass. These run only on the CPU device for large arrays (see `applies`);
their twins are the MLX formulations in models/mossformer2/layers.py (a GPU's, a Mac's).
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np

from .dispatch import kernels_on

MIN_SIZE = 1 << 16  # below this the MLX ops are cheaper than the round trip
ROWS = 64  # time rows per block: 64 x 2048 floats = 512 KB stays in L2


def applies(x: mx.array) -> bool:
    """The kernels here run for `x`: float32, large enough, with `kernels_on()`."""
    return x.size >= MIN_SIZE and x.dtype == mx.float32 and kernels_on()


def sigmoid_(z: np.ndarray) -> np.ndarray:
    """In place: z <- 1 / (1 + exp(-z))."""
    with np.errstate(over="ignore"):
        np.negative(z, out=z)
        np.exp(z, out=z)
    z += 1.0
    np.reciprocal(z, out=z)
    return z


def silu(x: mx.array) -> mx.array:
    a = np.asarray(x)
    return mx.array(a * sigmoid_(a.copy()))


def gate(att: mx.array, hidden: mx.array) -> mx.array:
    """(att_u * v) * sigmoid(att_v * u) on the (v | u) halves of the last axis."""
    e = hidden.shape[-1] // 2
    a, h = np.asarray(att), np.asarray(hidden)
    s = sigmoid_(a[..., :e] * h[..., e:])
    s *= a[..., e:]
    s *= h[..., :e]
    return mx.array(s)


def _conv_rows(xp: np.ndarray, w: np.ndarray, dilation: int, t: int) -> np.ndarray:
    """y[b, i, c] = sum_k xp[b, i + k*dilation, c] * w[k, c]; xp (B, Tp, C), w (K, C)."""
    b, _, c = xp.shape
    k = w.shape[0]
    y = np.empty((b, t, c), np.float32)
    tmp = np.empty((ROWS, c), np.float32)
    for bi in range(b):
        for t0 in range(0, t, ROWS):
            t1 = min(t, t0 + ROWS)
            yb, tb = y[bi, t0:t1], tmp[: t1 - t0]
            np.multiply(xp[bi, t0:t1], w[0], out=yb)
            for j in range(1, k):
                s = j * dilation
                np.multiply(xp[bi, t0 + s : t1 + s], w[j], out=tb)
                yb += tb
    return y


def silu_conv_residual(x: mx.array, w: mx.array) -> mx.array:
    """s + depthwise_conv(s) with s = silu(x), 'same' padding; x (B, T, C), w (C, K, 1)."""
    a = np.asarray(x)
    b, t, c = a.shape
    k = w.shape[1]
    p = (k - 1) // 2
    xp = np.zeros((b, t + k - 1, c), np.float32)
    body = xp[:, p : p + t]
    body[...] = a
    body *= sigmoid_(a.copy())
    wk = np.array(w[:, :, 0]).T.copy()  # (K, C)
    wk[p] += 1.0  # the residual s as an extra centre tap
    return mx.array(_conv_rows(xp, wk, 1, t))


def grouped_conv(
    x: mx.array, w: mx.array, pad_left: int, pad_right: int, dilation: int
) -> mx.array:
    """PyTorch-grouped conv, one output per group of G inputs: x (B, T, C*G), w (C, K, G)."""
    a = np.asarray(x)
    c, k, g = w.shape
    b, t, _ = a.shape
    wn = np.array(w)
    y = None
    for gi in range(g):
        xp = np.zeros((b, t + pad_left + pad_right, c), np.float32)
        xp[:, pad_left : pad_left + t] = a[..., gi::g] if g > 1 else a
        part = _conv_rows(xp, wn[:, :, gi].T.copy(), dilation, xp.shape[1] - (k - 1) * dilation)
        y = part if y is None else y + part
    return mx.array(y)
