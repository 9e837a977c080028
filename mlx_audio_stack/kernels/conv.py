"""ECAPA-TDNN's convolution pieces as kernels (kernels/c/conv.c), each with its MLX twin in
models/ecapa/model.py:

- `tdnn`: conv (im2col with per-utterance reflection + product), bias, ReLU, BatchNorm;
  twin `TDNNBlock`;
- `res2net`: a whole Res2Net block; twin `Res2NetBlock`;
- `se_residual`: SE statistics, its two small products, sigmoid, scaling + residual; twin
  `SEBlock` + the residual in `SERes2NetBlock`;
- `attentive_pool`: the attention TDNN (+ global context), tanh, 1x1 conv, softmax over time
  and the weighted mean and std; twin `AttentiveStatisticsPooling`.

On MLX's CPU backend the model's time is its products (~11 GFLOP per 3 s utterance) plus what
runs between them: ReLU and BatchNorm after every convolution, the SE means and scaling, the
residuals, the pooling's softmax and statistics; as MLX ops ~150 single-threaded passes with
an allocation each, about a fifth of a pass. Here each piece is one C pass on the kernels'
threads, in place in the product's output. Products go through `dispatch.gemm` (the BLAS's
for these sizes).

Each takes and returns MLX arrays (float32, evaluated: a kernel reads their buffers).
"""

from __future__ import annotations

import ctypes

import mlx.core as mx
import numpy as np

from .dispatch import gemm as _gemm
from .dispatch import use_kernels
from .library import library


def applies(x: mx.array) -> bool:
    """ECAPA's kernels run for `x`: float32 on MLX's CPU backend, the library loaded."""
    return use_kernels(x) and library() is not None


def _np(x: mx.array) -> np.ndarray:
    """A C-contiguous float32 NumPy array of x (zero-copy when MLX's buffer is one)."""
    mx.eval(x)
    return np.ascontiguousarray(np.asarray(memoryview(x)), dtype=np.float32)


def _ptr(a: np.ndarray | None) -> int | None:
    return None if a is None else a.ctypes.data


def _frames(frames: np.ndarray | None) -> np.ndarray | None:
    return None if frames is None else np.ascontiguousarray(frames, np.int64)


def _width(got: int, want: int, what: str) -> None:
    """The C passes index by the weights' shapes: an input of another width would be read
    past its end. Raise as MLX's own matmul does."""
    if got != want:
        raise ValueError(f"{what}: the input has width {got}, the weights expect {want}")


def _conv(x: np.ndarray, w: np.ndarray, k: int, d: int, frames: np.ndarray | None) -> np.ndarray:
    """conv (no bias) of x (B, T, cin) with w (k * cin, cout) -> (B * T, cout)."""
    b, t, cin = x.shape
    _width(k * cin, w.shape[0], f"conv (kernel {k} x {cin} channels)")
    rows = b * t
    if k > 1:
        col = np.empty((rows, k * cin), np.float32)
        library().mas_im2col(x.ctypes.data, cin, b, t, cin, k, d, _ptr(frames), col.ctypes.data)
        x = col
    out = np.empty((rows, w.shape[1]), np.float32)
    _gemm(x, w.shape[0], w.shape[0], w, out, w.shape[1], rows)
    return out


def _post(y: np.ndarray, rows: int, bias, scale, shift, tanh: bool = False) -> None:
    """In place: y = shift + scale * relu(y + bias) (then tanh)."""
    n = y.shape[-1]
    library().mas_bias_relu_affine(
        y.ctypes.data, rows, n, n, bias.ctypes.data, scale.ctypes.data, shift.ctypes.data,
        int(tanh),
    )  # fmt: skip


def tdnn(x: mx.array, w: mx.array, bias: mx.array, scale: mx.array, shift: mx.array, k: int,
         d: int, frames: np.ndarray | None = None) -> mx.array:  # fmt: skip
    """shift + scale * relu(conv(x) + bias) for x (B, T, cin), w (k * cin, cout) im2col rows,
    'same' reflection padding at each utterance's frames (None: at T) -> (B, T, cout)."""
    b, t, _ = x.shape
    y = _conv(_np(x), _np(w), k, d, _frames(frames))
    _post(y, b * t, _np(bias), _np(scale), _np(shift))
    return mx.array(y.reshape(b, t, -1))


def res2net(x: mx.array, blocks: list[tuple[mx.array, ...]], scale: int, k: int, d: int,
            frames: np.ndarray | None = None) -> mx.array:  # fmt: skip
    """A Res2Net block over x (B, T, scale * c): `blocks` holds each chunk's (w (k * c, c),
    bias, BatchNorm scale, shift). Returns a new (B, T, scale * c) array."""
    b, t, ch = x.shape
    _width(ch, scale * blocks[0][0].shape[1] if blocks else ch, "Res2Net block")
    for blk in blocks:
        _width(k * (ch // scale), blk[0].shape[0], "Res2Net block's conv")
    h = np.array(_np(x))  # the kernel works in place: a copy of its own
    keep = [[_np(a) for a in blk] for blk in blocks]
    ptrs = [(ctypes.c_void_p * len(keep))(*(blk[i].ctypes.data for blk in keep)) for i in range(4)]
    fr = _frames(frames)
    if library().mas_res2net(h.ctypes.data, b, t, scale, ch // scale, k, d, _ptr(fr), *ptrs):
        raise MemoryError("out of memory for the Res2Net block's scratch buffers")
    return mx.array(h)


def _time_stats(x: np.ndarray, w: np.ndarray | None, eps: float, std: bool):
    """Weighted mean (and std) over time of x (B, T, n); w (B, T) summing to 1 (None: 1/T)."""
    b, t, n = x.shape
    mean = np.empty((b, n), np.float32)
    sd = np.empty((b, n), np.float32) if std else None
    library().mas_time_stats(x.ctypes.data, n, b, t, n, _ptr(w), eps, mean.ctypes.data, _ptr(sd))
    return mean, sd


def _weights(w: mx.array | None) -> np.ndarray | None:
    """(B, T, 1) statistics weights -> (B, T) float32, or None."""
    return None if w is None else np.ascontiguousarray(_np(w)[:, :, 0])


def se_residual(x: mx.array, w: mx.array | None, w1: mx.array, b1: mx.array, w2: mx.array,
                b2: mx.array, residual: mx.array) -> mx.array:  # fmt: skip
    """x * sigmoid(relu(mean_t(x) @ w1 + b1) @ w2 + b2) + residual for x (B, T, C); `w`
    (B, T, 1) statistics weights summing to 1 per utterance (None: uniform)."""
    xa = _np(x)
    b, t, c = xa.shape
    s, _ = _time_stats(xa, _weights(w), 0.0, std=False)
    w1a, w2a = _np(w1), _np(w2)
    _width(c, w1a.shape[0], "SE block")
    _width(w1a.shape[1], w2a.shape[0], "SE block's second conv")
    _width(c, w2a.shape[1], "SE block's output")
    if tuple(residual.shape) != (b, t, c):
        raise ValueError(f"SE block: residual {tuple(residual.shape)} is not {(b, t, c)}")
    z = np.empty((b, w1a.shape[1]), np.float32)
    _gemm(s, c, c, w1a, z, z.shape[1], b)
    z = np.maximum(z + _np(b1), 0.0)
    g = np.empty((b, c), np.float32)
    _gemm(z, z.shape[1], z.shape[1], w2a, g, c, b)
    g += _np(b2)
    e = np.exp(-np.abs(g))  # sigmoid without overflow: (B, C)
    g = np.where(g >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(np.float32)
    out = np.empty((b * t, c), np.float32)
    library().mas_scale_add(out.ctypes.data, c, xa.ctypes.data, c, g.ctypes.data,
                            _np(residual).ctypes.data, c, b, t, c)  # fmt: skip
    return mx.array(out.reshape(b, t, c))


def attentive_pool(x: mx.array, w: mx.array | None, att: tuple[mx.array, ...],
                   conv: tuple[mx.array, mx.array], global_context: bool) -> mx.array:  # fmt: skip
    """Attentive statistics pooling of x (B, T, C) -> (B, 2C) [mean | std]. `att` is the
    attention TDNN's (w (C or 3C, A), bias, BatchNorm scale, shift), `conv` the 1x1 conv's
    (w (A, C), bias); `w` (B, T, 1) statistics weights (None: uniform): frames of weight 0
    take no part in the softmax."""
    xa = _np(x)
    b, t, c = xa.shape
    rows = b * t
    wa, bias, scale, shift = (_np(a) for a in att)
    _width((3 if global_context else 1) * c, wa.shape[0], "attentive pooling")
    na = wa.shape[1]
    sw = _weights(w)
    if global_context:  # cat([x, mean, std]) @ W == x @ Wx + (mean @ Wm + std @ Ws)
        mean, sd = _time_stats(xa, sw, 1e-12, std=True)
        ctx = np.empty((b, na), np.float32)
        _gemm(mean, c, c, np.ascontiguousarray(wa[c : 2 * c]), ctx, na, b)
        _gemm(sd, c, c, np.ascontiguousarray(wa[2 * c :]), ctx, na, b, beta=1.0)
        ctx += bias
        h = np.empty((rows, na), np.float32)
        _gemm(xa, c, c, np.ascontiguousarray(wa[:c]), h, na, rows)
        for i in range(b):  # the bias: the utterance's mean/std context
            _post(h[i * t : (i + 1) * t], t, ctx[i], scale, shift, tanh=True)
    else:
        h = _conv(xa, wa, 1, 1, None)
        _post(h, rows, bias, scale, shift, tanh=True)
    cw, cb = _np(conv[0]), _np(conv[1])
    logits = np.empty((rows, c), np.float32)
    _gemm(h, na, na, cw, logits, c, rows)
    mean = np.empty((b, c), np.float32)
    sd = np.empty((b, c), np.float32)
    library().mas_attentive_stats(
        logits.ctypes.data, cb.ctypes.data, xa.ctypes.data, c, b, t, c, _ptr(sw), 1e-12,
        mean.ctypes.data, sd.ctypes.data,
    )  # fmt: skip
    return mx.array(np.concatenate([mean, sd], axis=1))
