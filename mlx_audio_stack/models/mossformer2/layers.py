"""Building blocks of MossFormer2 (ClearerVoice-Studio `models/mossformer2_ss`), channels-last.

Attribute names follow the PyTorch reference so its state-dict keys load as they are
(`mdl.3.sequential.1.conv.weight` ...). Parameter-free slots of the reference's
`nn.Sequential`s (SiLU, Dropout, Transpose, Tanh) are kept as empty placeholder modules so the
indices of the weighted ones stay the same.

Depthwise convolutions: MLX's CPU backend has no fast path for `groups == channels`
(`mx.conv1d(..., groups=C)` ran 11x slower than torch on a (20000, 2048) input). On the CPU
device they run as cache-blocked numpy multiply-adds (kernels/depthwise.py); elsewhere as a sum of
shifted slices fused into one kernel by `mx.compile`.
"""

from __future__ import annotations

from functools import cache

import mlx.core as mx
import mlx.nn as nn

from ...kernels import depthwise


def silu(x: mx.array) -> mx.array:
    """x * sigmoid(x) (numpy SIMD exp on the CPU device, see kernels/depthwise.py)."""
    return depthwise.silu(x) if depthwise.applies(x) else nn.silu(x)


def gate(att: mx.array, hidden: mx.array) -> mx.array:
    """MossFormer2's attention gate on (v | u) halves: (att_u * v) * sigmoid(att_v * u)."""
    if depthwise.applies(hidden):
        return depthwise.gate(att, hidden)
    e = hidden.shape[-1] // 2
    v, u = hidden[..., :e], hidden[..., e:]
    return (att[..., e:] * v) * mx.sigmoid(att[..., :e] * u)


class Placeholder(nn.Module):
    """An empty slot of a reference `nn.Sequential` (activation, dropout, transpose)."""

    def __call__(self, x: mx.array) -> mx.array:
        return x


@cache
def _shifted_sum(k: int, g: int, dilation: int):
    """Compiled y[t, c] = sum_{k, g} xp[t + k * dilation, c, g] * w[k, c, g] for static k, g."""

    def fn(xp: mx.array, w: mx.array) -> mx.array:
        # xp: (B, T + (k-1)*dilation, C, G) padded input; w: (K, C, G)
        t = xp.shape[1] - (k - 1) * dilation
        y = None
        for i in range(k):
            s = xp[:, i * dilation : i * dilation + t]  # (B, T, C, G)
            term = s * w[i]
            y = term if y is None else y + term
        return y.sum(axis=-1) if g > 1 else y[..., 0]  # (B, T, C)

    return mx.compile(fn)


def depthwise_conv(
    x: mx.array, w: mx.array, pad_left: int, pad_right: int, dilation: int = 1
) -> mx.array:
    """Grouped 1-D convolution with one output channel per group, channels-last.

    x: (B, T, C * G) with group c holding input channels [c*G, (c+1)*G) (PyTorch's grouping);
    w: (C, K, G) (MLX conv layout of a torch (C, G, K) weight). Returns (B, T', C).
    """
    if depthwise.applies(x):
        return depthwise.grouped_conv(x, w, pad_left, pad_right, dilation)
    c, k, g = w.shape
    b, t, cg = x.shape
    xp = mx.pad(x, [(0, 0), (pad_left, pad_right), (0, 0)])
    xp = xp.reshape(b, t + pad_left + pad_right, c, g)  # (B, Tp, C, G)
    wk = mx.transpose(w, (1, 0, 2))  # (K, C, G)
    return _shifted_sum(k, g, dilation)(xp, wk)


class Conv1x1(nn.Module):
    """A kernel-size-1 `nn.Conv1d` as a matmul; weight kept in MLX conv layout (O, 1, I)."""

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True):
        super().__init__()
        self.weight = mx.zeros((out_channels, 1, in_channels))
        if bias:
            self.bias = mx.zeros((out_channels,))

    def __call__(self, x: mx.array) -> mx.array:
        w = self.weight[:, 0, :]  # (O, I)
        if "bias" in self:
            return mx.addmm(self.bias, x, w.T)
        return x @ w.T


class PReLU(nn.Module):
    """PyTorch `nn.PReLU(num_parameters)`: one slope, or one per channel (last axis)."""

    def __init__(self, num_parameters: int = 1):
        super().__init__()
        self.weight = mx.full((num_parameters,), 0.25)

    def __call__(self, x: mx.array) -> mx.array:
        return mx.where(x >= 0, x, self.weight * x)


class ScaleNorm(nn.Module):
    """x / max(||x|| * dim^-0.5, eps) * g over the last axis (reference eps 1e-5)."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.scale = dim**-0.5
        self.eps = eps
        self.g = mx.ones((1,))

    def __call__(self, x: mx.array) -> mx.array:
        norm = mx.sqrt(mx.sum(mx.square(x), axis=-1, keepdims=True)) * self.scale
        return x / mx.maximum(norm, self.eps) * self.g


def _sum(x: mx.array, axis: int) -> mx.array:
    """Sum over one axis, blocked in two levels (keepdims).

    MLX's CPU reductions accumulate sequentially in float32: a plain `mx.sum` of 500k values
    was off by 2e-5 relative, which GroupNorm turns into a 1e-3 error that 24 layers amplify.
    Summing blocks of ~sqrt(n) values first keeps the error near float32 rounding.
    """
    n = x.shape[axis]
    if n <= 512:
        return mx.sum(x, axis=axis, keepdims=True)
    blk = 1 << (int(n**0.5) - 1).bit_length()  # power of two >= sqrt(n)
    pad = (-n) % blk
    if pad:
        widths = [(0, 0)] * x.ndim
        widths[axis] = (0, pad)
        x = mx.pad(x, widths)
    shape = list(x.shape)
    shape[axis : axis + 1] = [shape[axis] // blk, blk]
    partial = mx.sum(x.reshape(shape), axis=axis + 1)  # (..., n / blk, ...)
    return mx.sum(partial, axis=axis, keepdims=True)


def _mean(x: mx.array, axes: tuple[int, ...]) -> mx.array:
    count = 1
    for a in sorted(axes, reverse=True):  # innermost first: short contiguous sums
        count *= x.shape[a]
        x = _sum(x, a)
    return x / count


def mean_var(x: mx.array, axes: tuple[int, ...]) -> tuple[mx.array, mx.array]:
    """Mean and biased variance (two passes, blocked sums, mean correction), keepdims."""
    mean = _mean(x, axes)
    d = x - mean
    corr = _mean(d, axes)
    var = _mean(mx.square(d), axes) - mx.square(corr)
    return mean + corr, var


class GlobalNorm(nn.Module):
    """`nn.GroupNorm(1, C)` on (B, T, C): statistics over time and channels, per-channel affine."""

    def __init__(self, dim: int, eps: float = 1e-8):
        super().__init__()
        self.eps = eps
        self.weight = mx.ones((dim,))
        self.bias = mx.zeros((dim,))

    def __call__(self, x: mx.array) -> mx.array:
        mean, var = mean_var(x, (1, 2))
        return (x - mean) * mx.rsqrt(var + self.eps) * self.weight + self.bias


class InstanceNorm(nn.Module):
    """`nn.InstanceNorm2d(C, affine=True)` on (B, T, C) (width 1): statistics over time."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = mx.ones((dim,))
        self.bias = mx.zeros((dim,))

    def __call__(self, x: mx.array) -> mx.array:
        mean, var = mean_var(x, (1,))
        return (x - mean) * mx.rsqrt(var + self.eps) * self.weight + self.bias


class DepthwiseConv1d(nn.Module):
    """Depthwise `nn.Conv1d(C, C, K, groups=C, padding=(K-1)//2, bias=False)`."""

    def __init__(self, channels: int, kernel_size: int):
        super().__init__()
        self.weight = mx.zeros((channels, kernel_size, 1))

    def __call__(self, x: mx.array) -> mx.array:
        pad = (self.weight.shape[1] - 1) // 2
        return depthwise_conv(x, self.weight, pad, pad)


class _DepthwiseHolder(nn.Module):
    """The reference's `DepthwiseConv1d` wrapper: its conv sits at `.conv`."""

    def __init__(self, channels: int, kernel_size: int):
        super().__init__()
        self.conv = DepthwiseConv1d(channels, kernel_size)

    def __call__(self, x: mx.array) -> mx.array:
        return self.conv(x)


class ConvModule(nn.Module):
    """x + depthwise_conv(x) (kernel 17, 'same' padding); `sequential.1.conv.weight`."""

    def __init__(self, channels: int, kernel_size: int = 17):
        super().__init__()
        self.sequential = [Placeholder(), _DepthwiseHolder(channels, kernel_size)]

    def __call__(self, x: mx.array) -> mx.array:
        return x + self.sequential[1](x)


class FFConvM(nn.Module):
    """norm -> Linear -> SiLU -> ConvModule (-> Dropout, identity at inference)."""

    def __init__(self, dim_in: int, dim_out: int, norm: str = "layernorm", kernel_size: int = 17):
        super().__init__()
        norm_layer = ScaleNorm(dim_in) if norm == "scalenorm" else nn.LayerNorm(dim_in, eps=1e-5)
        self.mdl = [
            norm_layer,
            nn.Linear(dim_in, dim_out),
            Placeholder(),
            ConvModule(dim_out, kernel_size),
            Placeholder(),
        ]

    def __call__(self, x: mx.array) -> mx.array:
        x = self.mdl[1](self.mdl[0](x))
        if depthwise.applies(x):  # SiLU, depthwise conv and residual in one pass
            return depthwise.silu_conv_residual(x, self.mdl[3].sequential[1].conv.weight)
        return self.mdl[3](silu(x))
