"""ECAPA-TDNN speaker embeddings, a port of SpeechBrain's
`speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN` (spkrec-ecapa-voxceleb layout).

Attribute names follow SpeechBrain's so the checkpoint keys load as they are
(`blocks.1.res2net_block.blocks.0.conv.conv.weight`, `asp_bn.norm.running_mean`, ...); the only
deviations (Conv1d weight layout, `num_batches_tracked`) live in
`ECAPA_TDNN.sanitize`.

Layout: channels-last. Input features (B, T, n_mels) -> embeddings (B, lin_neurons).
Conv weights are stored (out, kernel, in/groups) as MLX convs expect.

Lengths: SpeechBrain's convolutions pad "same" by *reflection* at the tensor's ends, so in a
zero-padded batch the frames near a short utterance's end see padding. `frames` (absolute valid
frame counts) makes every convolution reflect at each utterance's own end instead, and masks
the SE and pooling statistics, so a batched utterance gets the embedding it gets alone.
`mask` alone (without `frames`) reproduces SpeechBrain's batched computation.

On MLX's CPU backend the TDNN blocks, Res2Net blocks, SE scaling and the attentive pooling
each call their kernel (`kernels/conv.py`: the same computation as one C pass on all cores
after a BLAS product) instead of the MLX code here, which is their twin and runs everywhere
else (a Mac, `MAS_GEMV=off`, no C compiler, grouped convolutions).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from ...kernels import conv as kconv
from ...weights_io import channels_last, param_shapes

BN_EPS = 1e-5  # torch.nn.BatchNorm1d default, used by SpeechBrain's BatchNorm1d


# sane caps on a config's sizes (SpeechBrain's voxceleb model: 80 mels, 1024/3072 channels)
ARG_LIMITS = {
    "input_size": (1, 1024),
    "channels": (1, 65536),
    "kernel_sizes": (1, 99),
    "dilations": (1, 1024),
    "attention_channels": (1, 65536),
    "res2net_scale": (1, 256),
    "se_channels": (1, 65536),
    "groups": (1, 65536),
    "lin_neurons": (1, 65536),
}


@dataclass
class EcapaArgs:
    """Mirrors SpeechBrain's `ECAPA_TDNN` constructor arguments (the `embedding_model` entry of
    spkrec-ecapa-voxceleb's hyperparams.yaml), with their names and defaults."""

    input_size: int = 80
    channels: list[int] = field(default_factory=lambda: [512, 512, 512, 512, 1536])
    kernel_sizes: list[int] = field(default_factory=lambda: [5, 3, 3, 3, 1])
    dilations: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 1])
    attention_channels: int = 128
    res2net_scale: int = 8
    se_channels: int = 128
    global_context: bool = True
    groups: list[int] = field(default_factory=lambda: [1, 1, 1, 1, 1])
    lin_neurons: int = 192

    def check(self) -> None:
        n = len(self.channels)
        for name in ("kernel_sizes", "dilations", "groups"):
            if len(getattr(self, name)) != n:
                raise ValueError(
                    f"ECAPA args: {name} has {len(getattr(self, name))} entries, channels has {n}"
                )
        for k in self.kernel_sizes:
            if k % 2 == 0:
                raise ValueError(f"ECAPA args: kernel sizes must be odd ('same' padding), got {k}")
        for c in self.channels[1:-1]:
            if c % self.res2net_scale:
                raise ValueError(
                    f"ECAPA args: channels {c} not divisible by res2net_scale {self.res2net_scale}"
                )

    @property
    def max_pad(self) -> int:
        """Largest 'same' reflection pad: an utterance needs more frames than this."""
        return max(d * (k - 1) // 2 for k, d in zip(self.kernel_sizes, self.dilations))


# --- masks and padding -------------------------------------------------------------------------


def reflect_index(frames: np.ndarray, t: int, pad: int) -> mx.array:
    """(B, t + 2 pad) int32 gather index: reflection at 0 and at each row's own length.

    Positions past length + pad are clipped (their outputs are padding, never read).
    """
    j = np.arange(-pad, t + pad)[None, :]  # (1, t + 2 pad)
    n = np.asarray(frames).reshape(-1, 1)  # (B, 1)
    idx = np.abs(j)
    idx = np.where(idx >= n, 2 * (n - 1) - idx, idx)
    return mx.array(np.clip(idx, 0, t - 1).astype(np.int32))


class Lengths:
    """Per-batch length information shared by every layer of one forward pass.

    mask (B, T) bool: frames that count in SE/pooling statistics (None: all).
    frames: valid frame counts for per-utterance reflection padding (None: pad at the tensor end).
    """

    def __init__(self, t: int, mask: mx.array | None = None, frames: np.ndarray | None = None):
        self.t, self.mask, self.frames = t, mask, frames
        self._index: dict[int, mx.array] = {}

    def pad(self, x: mx.array, pad: int) -> mx.array:
        """(B, T, C) -> (B, T + 2 pad, C) reflection-padded along time."""
        if pad == 0:
            return x
        if self.frames is None or bool(np.all(self.frames == x.shape[1])):
            # reflect at the tensor ends: x[pad..1] + x + x[-2..-pad-1]
            left = x[:, pad:0:-1]
            right = x[:, -2 : -pad - 2 : -1]
            return mx.concatenate([left, x, right], axis=1)
        if pad not in self._index:
            self._index[pad] = reflect_index(self.frames, x.shape[1], pad)
        return mx.take_along_axis(x, self._index[pad][:, :, None], axis=1)

    def weights(self, dtype) -> mx.array | None:
        """(B, T, 1) mask / count (mean weights), or None when every frame counts."""
        if self.mask is None:
            return None
        m = self.mask[:, :, None].astype(dtype)
        return m / m.sum(axis=1, keepdims=True)


# --- layers (bottom-up) ------------------------------------------------------------------------


class _Params(nn.Module):
    """Holds `weight`/`bias` under SpeechBrain's inner name (`conv.conv.weight`)."""

    def __init__(self, shape: tuple[int, ...], bias: bool = True):
        super().__init__()
        self.weight = mx.zeros(shape)
        if bias:
            self.bias = mx.zeros((shape[0],))


class Conv1d(nn.Module):
    """SpeechBrain Conv1d: 'same' reflection padding, stride 1. Weight (out, k, in/groups).

    `prepare()` caches the weight as a contiguous (k*in, out) matrix: every conv with
    groups=1 runs as one BLAS matmul (im2col for k > 1), faster than MLX's CPU conv here.
    """

    def __init__(self, cin: int, cout: int, kernel_size: int, dilation: int = 1, groups: int = 1):
        super().__init__()
        self.kernel_size, self.dilation, self.groups = kernel_size, dilation, groups
        self.conv = _Params((cout, kernel_size, cin // groups))

    def prepare(self) -> None:
        w = self.conv.weight
        self._wmat = mx.contiguous(w.reshape(w.shape[0], -1).T)  # (k*in, out)

    def matrix(self) -> mx.array:
        """The (k*in, out) weight matrix (cached by `prepare`)."""
        if "_wmat" in self:
            return self["_wmat"]
        w = self.conv.weight
        return w.reshape(w.shape[0], -1).T

    def __call__(self, x: mx.array, lens: Lengths | None = None) -> mx.array:
        k, d = self.kernel_size, self.dilation
        if self.groups == 1:
            if k > 1:
                pad = d * (k - 1) // 2
                xp = (lens or Lengths(x.shape[1])).pad(x, pad)  # (B, T + 2 pad, C)
                t = x.shape[1]
                x = mx.concatenate([xp[:, i * d : i * d + t] for i in range(k)], axis=-1)
            return _linear(x, self.matrix(), self.conv.bias)
        pad = d * (k - 1) // 2
        xp = (lens or Lengths(x.shape[1])).pad(x, pad)
        return mx.conv1d(xp, self.conv.weight, dilation=d, groups=self.groups) + self.conv.bias


def _linear(x: mx.array, w: mx.array, b: mx.array) -> mx.array:
    """(..., in) @ (in, out) + b as one 2-D BLAS call with the bias fused (addmm)."""
    lead = x.shape[:-1]
    y = mx.addmm(b, x.reshape(-1, x.shape[-1]), w)  # (N, out)
    return y.reshape(*lead, w.shape[1])


class BatchNorm1d(nn.Module):
    """Inference BatchNorm (running statistics), keys `norm.{weight,bias,running_*}`."""

    def __init__(self, n: int):
        super().__init__()
        self.norm = _Params((n,))
        self.norm.running_mean = mx.zeros((n,))
        self.norm.running_var = mx.ones((n,))

    def prepare(self) -> None:
        self._affine = list(self._compute_affine())

    def _compute_affine(self) -> tuple[mx.array, mx.array]:
        p = self.norm
        scale = p.weight * mx.rsqrt(p.running_var + BN_EPS)
        return scale, p.bias - p.running_mean * scale

    def affine(self) -> tuple[mx.array, mx.array]:
        """(scale, shift) with y = x * scale + shift (cached by `prepare`)."""
        if "_affine" in self:
            return tuple(self["_affine"])
        return self._compute_affine()

    def __call__(self, x: mx.array) -> mx.array:
        scale, shift = self.affine()
        return x * scale + shift


def _relu_affine(x: mx.array, scale: mx.array, shift: mx.array) -> mx.array:
    # left as three plain MLX ops on purpose, both measured slower: a compiled (fused)
    # version fed by a matmul (3 ms at 1 x 3 s to 40 ms at 8 x 3 s), and the three passes in
    # place through NumPy on both cores (+5 ms at 1 x 3 s: a sync with MLX per TDNN block)
    return mx.maximum(x, 0) * scale + shift


# exp(x) = 2^n * e^r, n = round(x / ln 2), r = x - n ln 2 (split in two constants, Cody-Waite)
# and a degree-7 Taylor polynomial for e^r on [-ln2/2, ln2/2]: about 1e-7 relative error.
# MLX's CPU exp is scalar (~15 ms for one utterance's (301, 3072) attention logits); this
# fused elementwise form is ~4x faster and more accurate.
_EXP_C = [1.0 / math.factorial(k) for k in range(8)]
_LN2_HI, _LN2_LO, _LOG2E = 0.693359375, -2.12194440e-4, 1.4426950408889634


@partial(mx.compile, shapeless=True)
def _exp_parts(x: mx.array, shift: mx.array) -> tuple[mx.array, mx.array]:
    x = mx.clip(x - shift, -87.0, 88.0)
    # round(x / ln 2) by truncating a positive number (MLX's CPU floor is slow)
    ni = (x * _LOG2E + 1024.5).astype(mx.int32) - 1024
    n = ni.astype(mx.float32)
    r = x - n * _LN2_HI - n * _LN2_LO
    p = r * _EXP_C[7] + _EXP_C[6]
    for c in _EXP_C[5::-1]:
        p = p * r + c
    return p, (ni + 127) << 23  # float32 bits of 2^n


def fast_exp(x: mx.array, shift: mx.array | float = 0.0) -> mx.array:
    """exp(x - shift) for float32 x (inputs below -87 give ~1e-38, not 0)."""
    p, bits = _exp_parts(x, mx.array(shift, mx.float32))
    return p * mx.view(bits, mx.float32)


def softmax_time(logits: mx.array, mask: mx.array | None, normalize: bool = True) -> mx.array:
    """Softmax over axis 1 of (B, T, C); frames where mask (B, T) is False get weight 0.

    normalize=False returns the unnormalized exponentials (divide by their sum over time).
    """
    if mask is not None:
        logits = mx.where(mask[:, :, None], logits, -mx.inf)
    peak = logits.max(axis=1, keepdims=True)
    e = fast_exp(logits, peak)
    if mask is not None:
        e = mx.where(mask[:, :, None], e, 0.0)
    return e / e.sum(axis=1, keepdims=True) if normalize else e


class TDNNBlock(nn.Module):
    """Conv1d -> ReLU -> BatchNorm (dropout is identity at inference)."""

    def __init__(self, cin: int, cout: int, kernel_size: int, dilation: int, groups: int = 1):
        super().__init__()
        self.conv = Conv1d(cin, cout, kernel_size, dilation, groups)
        self.norm = BatchNorm1d(cout)

    def __call__(self, x: mx.array, lens: Lengths | None = None) -> mx.array:
        c = self.conv
        if c.groups == 1 and kconv.applies(x):  # twin: the line below
            fr = None if lens is None else lens.frames
            return kconv.tdnn(x, c.matrix(), c.conv.bias, *self.norm.affine(), c.kernel_size,
                              c.dilation, fr)  # fmt: skip
        return _relu_affine(self.conv(x, lens), *self.norm.affine())


class Res2NetBlock(nn.Module):
    """Channels split in `scale` chunks; chunk i>0 goes through a TDNN with the previous
    chunk's output added (chunk 1 without), chunk 0 passes through."""

    def __init__(self, channels: int, scale: int, kernel_size: int, dilation: int):
        super().__init__()
        c = channels // scale
        self.scale = scale
        self.blocks = [TDNNBlock(c, c, kernel_size, dilation) for _ in range(scale - 1)]

    def __call__(self, x: mx.array, lens: Lengths) -> mx.array:
        if kconv.applies(x):  # twin: the rest of this method
            conv = self.blocks[0].conv
            blocks = [(b.conv.matrix(), b.conv.conv.bias, *b.norm.affine()) for b in self.blocks]
            return kconv.res2net(x, blocks, self.scale, conv.kernel_size, conv.dilation,
                                 lens.frames)  # fmt: skip
        b, t, c = x.shape
        s = self.scale
        # one copy into (scale, B, T, C/scale): contiguous chunks (mx.split's strided views
        # made every chunk op slower)
        chunks = mx.contiguous(x.reshape(b, t, s, c // s).transpose(2, 0, 1, 3))
        ys = [chunks[0]]
        for i in range(1, s):
            inp = chunks[i] if i == 1 else chunks[i] + ys[-1]
            ys.append(self.blocks[i - 1](inp, lens))
        return mx.stack(ys, axis=2).reshape(b, t, c)  # (B, T, scale, C/scale) -> (B, T, C)


class SEBlock(nn.Module):
    """Squeeze-excitation: (masked) mean over time -> 1x1 conv, ReLU, 1x1 conv, sigmoid -> scale."""

    def __init__(self, cin: int, se_channels: int, cout: int):
        super().__init__()
        self.conv1 = Conv1d(cin, se_channels, 1)
        self.conv2 = Conv1d(se_channels, cout, 1)

    def __call__(self, x: mx.array, lens: Lengths) -> mx.array:
        w = lens.weights(x.dtype)
        s = x.mean(axis=1, keepdims=True) if w is None else (x * w).sum(axis=1, keepdims=True)
        s = mx.sigmoid(self.conv2(nn.relu(self.conv1(s))))  # (B, 1, C)
        return s * x


class SERes2NetBlock(nn.Module):
    """TDNN (1x1) -> Res2Net -> TDNN (1x1) -> SE, plus a (1x1 conv) residual."""

    def __init__(
        self,
        cin: int,
        cout: int,
        res2net_scale: int,
        se_channels: int,
        kernel_size: int,
        dilation: int,
        groups: int,
    ):
        super().__init__()
        self.tdnn1 = TDNNBlock(cin, cout, 1, 1, groups)
        self.res2net_block = Res2NetBlock(cout, res2net_scale, kernel_size, dilation)
        self.tdnn2 = TDNNBlock(cout, cout, 1, 1, groups)
        self.se_block = SEBlock(cout, se_channels, cout)
        if cin != cout:
            self.shortcut = Conv1d(cin, cout, 1)

    def __call__(self, x: mx.array, lens: Lengths) -> mx.array:
        residual = self.shortcut(x) if "shortcut" in self else x
        x = self.tdnn2(self.res2net_block(self.tdnn1(x), lens))
        if kconv.applies(x):  # twin: the line below
            c1, c2 = self.se_block.conv1, self.se_block.conv2
            w = lens.weights(x.dtype)
            return kconv.se_residual(x, w, c1.matrix(), c1.conv.bias, c2.matrix(), c2.conv.bias,
                                     residual)  # fmt: skip
        return self.se_block(x, lens) + residual


def _stats(
    x: mx.array, w: mx.array, eps: float = 1e-12, total: mx.array | None = None
) -> tuple[mx.array, mx.array]:
    """Weighted mean and std over time: x (B, T, C), w (B, T, C or 1) summing to 1 over time,
    or to `total` (B, C) (then divided here: saves normalizing the (B, T, C) weights)."""
    mean = (w * x).sum(axis=1)  # (B, C)
    if total is not None:
        mean = mean / total
    var = (w * mx.square(x - mean[:, None])).sum(axis=1)
    if total is not None:
        var = var / total
    return mean, mx.sqrt(mx.maximum(var, eps))


class AttentiveStatisticsPooling(nn.Module):
    """Attention over time (with global mean/std context) -> weighted mean and std."""

    def __init__(self, channels: int, attention_channels: int, global_context: bool):
        super().__init__()
        self.global_context = global_context
        self.tdnn = TDNNBlock(channels * (3 if global_context else 1), attention_channels, 1, 1)
        self.conv = Conv1d(attention_channels, channels, 1)

    def prepare(self) -> None:
        self._split = list(self._split_weights())

    def _split_weights(self) -> tuple[mx.array, mx.array, mx.array]:
        """The attention TDNN's (3C, A) matrix split into its x / mean / std parts."""
        w = self.tdnn.conv.matrix()  # (3C, A)
        c = w.shape[0] // 3
        return mx.contiguous(w[:c]), mx.contiguous(w[c : 2 * c]), mx.contiguous(w[2 * c :])

    def __call__(self, x: mx.array, lens: Lengths) -> mx.array:
        b, t, c = x.shape
        w = lens.weights(x.dtype)
        tdnn = self.tdnn
        if tdnn.conv.groups == 1 and kconv.applies(x):  # twin: the rest of this method
            att = (tdnn.conv.matrix(), tdnn.conv.conv.bias, *tdnn.norm.affine())
            conv = (self.conv.matrix(), self.conv.conv.bias)
            return kconv.attentive_pool(x, w, att, conv, self.global_context)
        if self.global_context:
            mean, std = _stats(x, w if w is not None else mx.full((b, t, 1), 1.0 / t))
            # cat([x, mean, std]) @ W == x @ Wx + (mean @ Wm + std @ Ws): no (B, T, 3C) tensor
            wx, wm, ws = self["_split"] if "_split" in self else self._split_weights()
            ctx = mx.addmm(self.tdnn.conv.conv.bias, mean, wm) + std @ ws  # (B, A)
            h = (x.reshape(b * t, c) @ wx).reshape(b, t, -1) + ctx[:, None]  # (B, T, A)
            h = _relu_affine(h, *self.tdnn.norm.affine())
        else:
            h = self.tdnn(x, lens)
        e = softmax_time(self.conv(mx.tanh(h)), lens.mask, normalize=False)
        mean, std = _stats(x, e, total=e.sum(axis=1))
        return mx.concatenate([mean, std], axis=-1)  # (B, 2C)


class ECAPA_TDNN(nn.Module):  # noqa: N801  (SpeechBrain's class name)
    """The embedding model: features (B, T, input_size) -> embeddings (B, lin_neurons)."""

    def __init__(self, args: EcapaArgs):
        super().__init__()
        args.check()
        self.args = args
        ch, ks, dl, gr = args.channels, args.kernel_sizes, args.dilations, args.groups
        self.blocks = [TDNNBlock(args.input_size, ch[0], ks[0], dl[0], gr[0])]
        for i in range(1, len(ch) - 1):
            self.blocks.append(
                SERes2NetBlock(
                    ch[i - 1], ch[i], args.res2net_scale, args.se_channels, ks[i], dl[i], gr[i]
                )
            )
        self.mfa = TDNNBlock(ch[-2] * (len(ch) - 2), ch[-1], ks[-1], dl[-1], gr[-1])
        self.asp = AttentiveStatisticsPooling(ch[-1], args.attention_channels, args.global_context)
        self.asp_bn = BatchNorm1d(ch[-1] * 2)
        self.fc = Conv1d(ch[-1] * 2, args.lin_neurons, 1)

    def prepare(self) -> ECAPA_TDNN:
        """Cache inference forms of the weights (matmul layouts, BatchNorm scale/shift).
        Called by `load_weights`; call it again after changing weights by hand."""
        for _, m in self.named_modules():
            if isinstance(m, (Conv1d, BatchNorm1d)):
                m.prepare()
        for _, m in self.named_modules():
            if isinstance(m, AttentiveStatisticsPooling):
                m.prepare()  # after its convs and norms
        mx.eval(self.state)
        return self

    def load_weights(self, *args, **kwargs) -> ECAPA_TDNN:
        super().load_weights(*args, **kwargs)
        return self.prepare()

    def __call__(
        self, feats: mx.array, mask: mx.array | None = None, frames: np.ndarray | None = None
    ) -> mx.array:
        """feats (B, T, F); mask (B, T) valid frames for statistics; frames (B,) valid counts
        for per-utterance reflection (see module docstring). Returns (B, lin_neurons)."""
        lens = Lengths(feats.shape[1], mask, None if frames is None else np.asarray(frames))
        x = self.blocks[0](feats, lens)
        xl = []
        for layer in self.blocks[1:]:
            x = layer(x, lens)
            xl.append(x)
        x = self.mfa(mx.concatenate(xl, axis=-1), lens)  # (B, T, ch[-2] * n_blocks)
        x = self.asp_bn(self.asp(x, lens))  # (B, 2C)
        return self.fc(x)  # (B, lin_neurons)

    def sanitize(self, weights: dict[str, Any]) -> dict[str, Any]:
        """SpeechBrain state dict -> MLX names/layouts. Safe to run twice.

        Drops BatchNorm `num_batches_tracked`; Conv1d weights (out, in, k) -> (out, k, in) when
        this model wants that and the weight is not already so.
        """
        shapes = param_shapes(self)
        return {
            k: channels_last(v if hasattr(v, "shape") else np.asarray(v), shapes.get(k))
            for k, v in weights.items()
            if not k.endswith("num_batches_tracked")
        }
