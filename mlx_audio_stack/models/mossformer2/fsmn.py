"""The gated FSMN memory block of MossFormer2 (reference: `Gated_FSMN_Block_Dilated`,
`Gated_FSMN_dilated`, `UniDeepFsmn_dilated`, `DilatedDenseNet` in `mossformer2_block.py` /
`fsmn.py`), channels-last (B, T, C)."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from .layers import Conv1x1, FFConvM, InstanceNorm, PReLU, depthwise_conv


class DilatedDenseNet(nn.Module):
    """Dense stack of dilated grouped convolutions (kernel 2*lorder-1 along time).

    Layer i (dilation 2**i) sees the concatenation [out_{i-1}, ..., out_0, x] ((i+1)*C
    channels) in groups of i+1 consecutive channels, as PyTorch's `groups=C` does.
    """

    def __init__(self, depth: int = 2, lorder: int = 20, in_channels: int = 256):
        super().__init__()
        self.depth = depth
        self.lorder = lorder
        twidth = 2 * lorder - 1
        for i in range(depth):
            # MLX conv layout of a torch (C, i+1, twidth, 1) weight: (C, twidth, 1, i+1)
            setattr(self, f"conv{i + 1}", _Weight((in_channels, twidth, 1, i + 1)))
            setattr(self, f"norm{i + 1}", InstanceNorm(in_channels))
            setattr(self, f"prelu{i + 1}", PReLU(in_channels))

    def __call__(self, x: mx.array) -> mx.array:
        skip = x  # (B, T, C)
        out = x
        for i in range(self.depth):
            dil = 2**i
            pad = self.lorder + (dil - 1) * (self.lorder - 1) - 1
            w = getattr(self, f"conv{i + 1}").weight
            c, k, _, g = w.shape
            out = depthwise_conv(skip, w.reshape(c, k, g), pad, pad, dilation=dil)
            out = getattr(self, f"prelu{i + 1}")(getattr(self, f"norm{i + 1}")(out))
            skip = mx.concatenate([out, skip], axis=-1)  # (B, T, (i+2)*C)
        return out


class _Weight(nn.Module):
    """A bare conv weight (the math lives in the parent)."""

    def __init__(self, shape: tuple[int, ...]):
        super().__init__()
        self.weight = mx.zeros(shape)


class UniDeepFsmnDilated(nn.Module):
    """input + DilatedDenseNet(project(relu(linear(input))))."""

    def __init__(
        self, input_dim: int, output_dim: int, lorder: int, hidden_size: int, depth: int = 2
    ):
        super().__init__()
        self.linear = nn.Linear(input_dim, hidden_size)
        self.project = nn.Linear(hidden_size, output_dim, bias=False)
        self.conv = DilatedDenseNet(depth=depth, lorder=lorder, in_channels=output_dim)

    def __call__(self, x: mx.array) -> mx.array:
        p1 = self.project(nn.relu(self.linear(x)))
        return x + self.conv(p1)


class GatedFSMNDilated(nn.Module):
    """to_v(x) * fsmn(to_u(x)) + x."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        lorder: int,
        hidden_size: int,
        kernel_size: int = 17,
    ):
        super().__init__()
        self.to_u = FFConvM(in_channels, hidden_size, "layernorm", kernel_size)
        self.to_v = FFConvM(in_channels, hidden_size, "layernorm", kernel_size)
        self.fsmn = UniDeepFsmnDilated(in_channels, out_channels, lorder, hidden_size)

    def __call__(self, x: mx.array) -> mx.array:
        return self.to_v(x) * self.fsmn(self.to_u(x)) + x


class GatedFSMNBlockDilated(nn.Module):
    """1x1 conv + PReLU -> LayerNorm -> gated FSMN -> LayerNorm -> 1x1 conv, plus residual."""

    def __init__(
        self, dim: int, inner_channels: int = 256, lorder: int = 20, kernel_size: int = 17
    ):
        super().__init__()
        self.conv1 = [Conv1x1(dim, inner_channels), PReLU(1)]
        self.norm1 = nn.LayerNorm(inner_channels, eps=1e-5)
        self.gated_fsmn = GatedFSMNDilated(
            inner_channels, inner_channels, lorder, inner_channels, kernel_size
        )
        self.norm2 = nn.LayerNorm(inner_channels, eps=1e-5)
        self.conv2 = Conv1x1(inner_channels, dim)

    def __call__(self, x: mx.array) -> mx.array:
        h = self.conv1[1](self.conv1[0](x))
        h = self.norm2(self.gated_fsmn(self.norm1(h)))
        return self.conv2(h) + x
