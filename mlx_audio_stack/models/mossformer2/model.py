"""MossFormer2 speech separation in MLX.

Reference: ClearerVoice-Studio `clearvoice/models/mossformer2_ss/mossformer2.py`
(`MossFormer2_SS_16K(args).model`, i.e. `MossFormer`): conv encoder (kernel K, stride K/2,
ReLU) -> mask net (GroupNorm, 1x1 conv, scaled sinusoidal positions, 24 x [gated attention
+ gated FSMN], per-speaker masks) -> masked encoder features -> transposed-conv decoder.

Layout: channels-last everywhere, (B, T, C); the waveform is (B, samples). State-dict names
are the reference's (without `module.`), so a ClearerVoice checkpoint loads after
`MossFormer2.sanitize` (conv weights into MLX layout).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import mlx.core as mx
import mlx.nn as nn

from ...errors import WeightsError
from ...weights_io import channels_last, checked_args, param_shapes
from .attention import FLASHShareAFFConvM
from .fsmn import GatedFSMNBlockDilated
from .layers import Conv1x1, GlobalNorm, Placeholder, PReLU

# sane caps on a config's sizes (ClearerVoice's largest: 512 wide, 24 layers, 3 speakers)
ARG_LIMITS = {
    "num_spks": (1, 16),
    "encoder_kernel_size": (2, 1024),
    "encoder_embedding_dim": (1, 16384),
    "mossformer_sequence_dim": (2, 16384),
    "num_mossformer_layer": (1, 1024),
    "sampling_rate": (1000, 384000),
    "group_size": (1, 65536),
    "query_key_dim": (2, 16384),
    "expansion_factor": (0, 64),
    "fsmn_inner_channels": (1, 16384),
    "fsmn_lorder": (1, 4096),
    "conv_kernel_size": (1, 4096),
}


@dataclass
class ModelArgs:
    """Field names as in ClearerVoice's `MossFormer2_SS_16K.yaml` (+ the fixed inner knobs)."""

    num_spks: int = 2
    encoder_kernel_size: int = 16
    encoder_embedding_dim: int = 512
    mossformer_sequence_dim: int = 512
    num_mossformer_layer: int = 24
    sampling_rate: int = 16000
    # WHAMR! variant: the decoder reads the mask net output directly (no x * mask)
    skip_mask_multiplication: bool = False
    # fixed in the reference code; exposed for completeness
    group_size: int = 256
    query_key_dim: int = 128
    expansion_factor: float = 4.0
    fsmn_inner_channels: int = 256
    fsmn_lorder: int = 20
    conv_kernel_size: int = 17
    norm_type: str = "scalenorm"
    shift_tokens: bool = True

    @classmethod
    def from_dict(
        cls, d: dict[str, Any], where: str = "mossformer2 args", error: type = WeightsError
    ) -> ModelArgs:
        """Checked against the field types, ARG_LIMITS and `check` (raises `error`)."""
        return checked_args(cls, d, where, error, ARG_LIMITS)

    def check(self) -> None:
        if self.norm_type != "scalenorm":
            raise ValueError(f"norm_type {self.norm_type!r}: only 'scalenorm' is implemented")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def stride(self) -> int:
        return self.encoder_kernel_size // 2


class ScaledSinuEmbedding(nn.Module):
    """cat(sin(t * inv_freq), cos(t * inv_freq)) * scale for t = 0..L-1: (L, D)."""

    def __init__(self, dim: int):
        super().__init__()
        self.scale = mx.ones((1,))
        self.inv_freq = 1.0 / (10000 ** (mx.arange(0, dim, 2, dtype=mx.float32) / dim))

    def __call__(self, n: int) -> mx.array:
        sinu = mx.arange(n, dtype=mx.float32)[:, None] * self.inv_freq[None, :]  # (L, D/2)
        return mx.concatenate([mx.sin(sinu), mx.cos(sinu)], axis=-1) * self.scale


class MossformerBlockGFSMN(nn.Module):
    """`depth` x (gated attention layer, gated FSMN block)."""

    def __init__(self, a: ModelArgs):
        super().__init__()
        dim = a.mossformer_sequence_dim
        self.fsmn = [
            GatedFSMNBlockDilated(dim, a.fsmn_inner_channels, a.fsmn_lorder, a.conv_kernel_size)
            for _ in range(a.num_mossformer_layer)
        ]
        self.layers = [
            FLASHShareAFFConvM(
                dim,
                a.group_size,
                a.query_key_dim,
                a.expansion_factor,
                a.norm_type,
                a.shift_tokens,
                a.conv_kernel_size,
            )
            for _ in range(a.num_mossformer_layer)
        ]

    def __call__(self, x: mx.array) -> mx.array:
        for flash, fsmn in zip(self.layers, self.fsmn):
            x = fsmn(flash(x))
        return x


class MossFormerM(nn.Module):
    def __init__(self, a: ModelArgs):
        super().__init__()
        self.mossformerM = MossformerBlockGFSMN(a)
        self.norm = nn.LayerNorm(a.mossformer_sequence_dim, eps=1e-6)

    def __call__(self, x: mx.array) -> mx.array:
        return self.norm(self.mossformerM(x))


class ComputationBlock(nn.Module):
    """x + GroupNorm(MossFormerM(x))."""

    def __init__(self, a: ModelArgs):
        super().__init__()
        self.intra_mdl = MossFormerM(a)
        self.intra_norm = GlobalNorm(a.mossformer_sequence_dim)

    def __call__(self, x: mx.array) -> mx.array:
        return self.intra_norm(self.intra_mdl(x)) + x


class MaskNet(nn.Module):
    """Encoder features (B, L, N) -> non-negative masks (S, B, L, N), S speakers."""

    def __init__(self, a: ModelArgs):
        super().__init__()
        n_in, n = a.encoder_embedding_dim, a.mossformer_sequence_dim
        self.num_spks = a.num_spks
        self.norm = GlobalNorm(n_in)
        self.conv1d_encoder = Conv1x1(n_in, n, bias=False)
        self.pos_enc = ScaledSinuEmbedding(n)
        self.mdl = ComputationBlock(a)
        self.prelu = PReLU(1)
        self.conv1d_out = Conv1x1(n, n * a.num_spks)
        self.conv1_decoder = Conv1x1(n, n_in, bias=False)
        self.output = [Conv1x1(n, n), Placeholder()]
        self.output_gate = [Conv1x1(n, n), Placeholder()]

    def __call__(self, x: mx.array) -> mx.array:
        x = self.conv1d_encoder(self.norm(x))  # (B, L, N)
        b, length, n = x.shape
        x = x + self.pos_enc(length)
        x = self.prelu(self.mdl(x))
        x = self.conv1d_out(x)  # (B, L, S*N), channel s*N + i belongs to speaker s
        x = x.reshape(b, length, self.num_spks, n).transpose(2, 0, 1, 3)  # (S, B, L, N)
        x = mx.tanh(self.output[0](x)) * mx.sigmoid(self.output_gate[0](x))
        return nn.relu(self.conv1_decoder(x))  # (S, B, L, N_in)


class Encoder(nn.Module):
    """Conv1d(1, N, K, stride K/2, no bias) + ReLU: (B, T) -> (B, L, N)."""

    def __init__(self, kernel_size: int, out_channels: int):
        super().__init__()
        self.kernel_size = kernel_size
        self.conv1d = _ConvWeight((out_channels, kernel_size, 1))

    def __call__(self, x: mx.array) -> mx.array:
        k, s = self.kernel_size, self.kernel_size // 2
        b, t = x.shape
        n_frames = (t - k) // s + 1
        w = self.conv1d.weight[:, :, 0]  # (N, K)
        if k == 2 * s:
            # frames = two stride-long halves side by side: (B, L, K) without a gather
            halves = x[:, : (n_frames + 1) * s].reshape(b, n_frames + 1, s)
            frames = mx.concatenate([halves[:, :-1], halves[:, 1:]], axis=-1)
        else:
            idx = mx.arange(n_frames)[:, None] * s + mx.arange(k)[None, :]
            frames = x[:, idx]  # (B, L, K)
        return nn.relu(frames @ w.T)


class _ConvWeight(nn.Module):
    def __init__(self, shape: tuple[int, ...]):
        super().__init__()
        self.weight = mx.zeros(shape)


class Decoder(nn.Module):
    """ConvTranspose1d(N, 1, K, stride K/2, no bias): (B, L, N) -> (B, (L-1)*K/2 + K).

    Weight in MLX layout (1, K, N) (torch: (N, 1, K)); frames @ W then overlap-add.
    """

    def __init__(self, kernel_size: int, in_channels: int):
        super().__init__()
        self.kernel_size = kernel_size
        self.weight = mx.zeros((1, kernel_size, in_channels))

    def __call__(self, x: mx.array) -> mx.array:
        k, s = self.kernel_size, self.kernel_size // 2
        b, length, _ = x.shape
        frames = x @ self.weight[0].T  # (B, L, K)
        if k == 2 * s:
            a = mx.pad(frames[..., :s], [(0, 0), (0, 1), (0, 0)])  # (B, L+1, s)
            c = mx.pad(frames[..., s:], [(0, 0), (1, 0), (0, 0)])
            return (a + c).reshape(b, (length + 1) * s)
        out = mx.zeros((b, (length - 1) * s + k))
        for j in range(k):  # generic stride: scatter-add one tap at a time
            out = out.at[:, mx.arange(length) * s + j].add(frames[..., j])
        return out


class MossFormer2(nn.Module):
    """The separation network. `__call__(mix (B, T)) -> (B, T, S)` estimated sources."""

    def __init__(self, args: ModelArgs):
        super().__init__()
        self.args = args
        self.enc = Encoder(args.encoder_kernel_size, args.encoder_embedding_dim)
        self.mask_net = MaskNet(args)
        self.dec = Decoder(args.encoder_kernel_size, args.encoder_embedding_dim)

    @property
    def num_spks(self) -> int:
        return self.args.num_spks

    @property
    def sample_rate(self) -> int:
        return self.args.sampling_rate

    def __call__(self, mix: mx.array) -> mx.array:
        t_in = mix.shape[1]
        k = self.args.encoder_kernel_size
        if t_in < k:  # shorter than one encoder frame: zero-pad (reference would fail)
            mix = mx.pad(mix, [(0, 0), (0, k - t_in)])
        x = self.enc(mix)  # (B, L, N)
        mask = self.mask_net(x)  # (S, B, L, N)
        sep = mask if self.args.skip_mask_multiplication else x[None] * mask
        s, b, length, n = sep.shape
        est = self.dec(sep.reshape(s * b, length, n)).reshape(s, b, -1)  # (S, B, T')
        t_est = est.shape[-1]
        if t_est < t_in:
            est = mx.pad(est, [(0, 0), (0, 0), (0, t_in - t_est)])
        return est[:, :, :t_in].transpose(1, 2, 0)  # (B, T, S)

    def sanitize(self, weights: dict[str, Any]) -> dict[str, Any]:
        """Reference names/layouts -> this model's: the `module.` / `model.` wrapper prefixes
        dropped; Conv (O, I, *K) -> (O, *K, I), the decoder's ConvTranspose (I, O, K) ->
        (O, K, I). Safe to run twice (shape-driven)."""
        shapes = param_shapes(self)
        out = {}
        for key, v in weights.items():
            k = key[len("module.") :] if key.startswith("module.") else key
            if k.startswith("model.") and k[len("model.") :] in shapes:
                k = k[len("model.") :]  # wrapper prefix (`MossFormer2_SS_16K.model`)
            perm = (1, 2, 0) if k == "dec.weight" and len(v.shape) == 3 else None
            out[k] = channels_last(v, shapes.get(k), perm)
        return out


def num_params(model: nn.Module) -> int:
    from mlx.utils import tree_flatten

    return sum(math.prod(p.shape) for _, p in tree_flatten(model.parameters()))
