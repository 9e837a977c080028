"""Silero VAD v5/v6 in MLX.

Reference: the TorchScript `silero_vad.jit` of the `silero-vad` PyPI package (class
`VADRNNJITMerge` holding a 16 kHz `_model` and an 8 kHz `_model_8k`, each a `VADRNNJIT`).
One branch maps one chunk (with the previous chunk's last samples prepended as context) to
one speech probability:

    (B, ctx + n) samples -> reflect-pad right by filter/4 -> STFT as a fixed conv (hop filter/2)
    -> magnitude (B, 4, filter/2 + 1) -> 4 x [conv k3 + ReLU] (strides 1, 2, 2, 1) -> (B, 128)
    -> LSTMCell (h, c) -> ReLU -> 1x1 conv -> sigmoid -> (B,)

| rate | chunk n | context | filter | hop | STFT bins |
|---|---|---|---|---|---|
| 16000 | 512 | 64 | 256 | 128 | 129 |
| 8000 | 256 | 32 | 128 | 64 | 65 |

Layout: channels-last (MLX), conv weights (O, K, I). Parameter names are the JIT's with the
leading underscore of `_model` / `_model_8k` dropped (`model.encoder.0.reparam_conv.weight`);
`SileroVAD.sanitize` holds every deviation from the source names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from ...errors import WeightsError
from ...weights_io import channels_last, checked_args, param_shapes

HIDDEN = 128  # LSTM width and the encoder's output channels
ENCODER_CHANNELS = (128, 64, 64, 128)  # out channels of the 4 conv blocks
ENCODER_STRIDES = (1, 2, 2, 1)


@dataclass
class BranchArgs:
    """One sample-rate branch; field names follow the JIT's attributes."""

    sample_rate: int
    context_size_samples: int  # samples of the previous chunk prepended to each chunk
    filter_length: int  # STFT frame length
    hop_length: int  # STFT hop

    @property
    def num_samples(self) -> int:
        """Chunk length: 4 STFT hops (512 samples at 16 kHz = 32 ms)."""
        return 4 * self.hop_length

    @property
    def pad(self) -> int:
        """Right reflect padding before the STFT (64 at 16 kHz)."""
        return self.filter_length // 4

    @property
    def n_bins(self) -> int:
        return self.filter_length // 2 + 1


BRANCH_16K = BranchArgs(16000, 64, 256, 128)
BRANCH_8K = BranchArgs(8000, 32, 128, 64)
KNOWN_BRANCHES = {16000: BRANCH_16K, 8000: BRANCH_8K}


@dataclass
class ModelArgs:
    """`sample_rates` names the branches present: 16000 (`model`) and/or 8000 (`model_8k`).

    The source ships no config file: these mirror the TorchScript `VADRNNJITMerge`'s branches
    (`_model`, `_model_8k`) and its LSTM width; `BranchArgs` mirrors each branch's attributes."""

    sample_rates: list[int] = field(default_factory=lambda: [16000, 8000])
    hidden_size: int = HIDDEN

    @classmethod
    def from_dict(
        cls, d: dict[str, Any], where: str = "silero_vad args", error: type = WeightsError
    ) -> ModelArgs:
        """Checked against the field types and `check` (raises `error`)."""
        return checked_args(cls, d, where, error, {"hidden_size": (1, 4096)})

    def check(self) -> None:
        rates = self.sample_rates
        if len(set(rates)) != len(rates) or not set(rates) <= set(KNOWN_BRANCHES):
            raise ValueError(
                f"sample_rates {rates}: expected distinct values of {sorted(KNOWN_BRANCHES)}"
            )


def branch_name(sr: int) -> str:
    return "model" if sr == 16000 else f"model_{sr // 1000}k"


class STFT(nn.Module):
    """Magnitude STFT: framing by a fixed gather, then the (2F, K, 1) basis (or an FFT)."""

    def __init__(self, args: BranchArgs):
        super().__init__()
        self.args = args
        self.forward_basis_buffer = mx.zeros((2 * args.n_bins, args.filter_length, 1))
        # gather index (4, filter): frame f takes padded[f*hop : f*hop + filter], where the
        # padded signal reflects the last `pad` samples (torch "reflect": edge not repeated)
        n = args.context_size_samples + args.num_samples
        padded = np.concatenate([np.arange(n), n - 2 - np.arange(args.pad)])
        n_frames = (n + args.pad - args.filter_length) // args.hop_length + 1
        starts = np.arange(n_frames)[:, None] * args.hop_length
        self._frame_index = mx.array(padded[starts + np.arange(args.filter_length)])

    def prepare(self) -> None:
        """After loading weights: if the basis is the periodic-Hann DFT (silero's is, to 1e-7),
        `magnitude` uses an FFT (measured 2.4x faster than the basis matmul for a whole file)."""
        basis = np.array(self.forward_basis_buffer[..., 0], dtype=np.float64)  # (2F, L)
        length, f = self.args.filter_length, self.args.n_bins
        n = np.arange(length)
        window = 0.5 - 0.5 * np.cos(2 * np.pi * n / length)
        angle = 2 * np.pi * np.arange(f)[:, None] * n / length
        dft = np.concatenate([window * np.cos(angle), -window * np.sin(angle)])
        is_dft = basis.shape == dft.shape and np.abs(basis - dft).max() < 1e-6
        object.__setattr__(self, "_window", mx.array(window.astype(np.float32)) if is_dft else None)

    def magnitude(self, frames: mx.array) -> mx.array:
        """(..., filter) frames -> (..., n_bins) magnitude spectrum."""
        window = self.__dict__.get("_window")
        if window is not None:
            return mx.abs(mx.fft.rfft(frames * window))
        spec = frames @ self.forward_basis_buffer[..., 0].T  # (..., 2F)
        f = self.args.n_bins
        return mx.sqrt(spec[..., :f] ** 2 + spec[..., f:] ** 2)

    def __call__(self, x: mx.array) -> mx.array:
        """(B, ctx + n) samples -> (B, 4, n_bins) magnitudes."""
        return self.magnitude(mx.take(x, self._frame_index, axis=1))  # frames (B, 4, filter)


class SileroVadBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int):
        super().__init__()
        self.reparam_conv = nn.Conv1d(in_ch, out_ch, 3, stride=stride, padding=1)

    def __call__(self, x: mx.array) -> mx.array:
        return nn.relu(self.reparam_conv(x))


class LSTMCell(nn.Module):
    """torch.nn.LSTMCell (gate order i, f, g, o) with torch's parameter names."""

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.weight_ih = mx.zeros((4 * hidden_size, input_size))
        self.weight_hh = mx.zeros((4 * hidden_size, hidden_size))
        self.bias_ih = mx.zeros((4 * hidden_size,))
        self.bias_hh = mx.zeros((4 * hidden_size,))

    def input_gates(self, x: mx.array) -> mx.array:
        """The part of the gates that does not depend on the state: (..., I) -> (..., 4H)."""
        return x @ self.weight_ih.T + (self.bias_ih + self.bias_hh)

    def step(self, gx: mx.array, h: mx.array, c: mx.array) -> tuple[mx.array, mx.array]:
        """One step from precomputed input gates `gx` (B, 4H); h, c (B, H)."""
        g = gx + h @ self.weight_hh.T
        i, f, gg, o = mx.split(g, 4, axis=-1)
        c = mx.sigmoid(f) * c + mx.sigmoid(i) * mx.tanh(gg)
        h = mx.sigmoid(o) * mx.tanh(c)
        return h, c


class Decoder(nn.Module):
    def __init__(self, hidden: int):
        super().__init__()
        self.rnn = LSTMCell(hidden, hidden)
        # same indices as the JIT's Sequential(Dropout, ReLU, Conv1d, Sigmoid)
        self.decoder = [nn.Dropout(0.0), nn.ReLU(), nn.Conv1d(hidden, 1, 1), nn.Sigmoid()]

    def head(self, h: mx.array) -> mx.array:
        """(..., H) hidden states -> (...,) speech probabilities."""
        conv = self.decoder[2]
        w = conv.weight.reshape(1, -1)  # (1, 1, H) -> (1, H)
        return mx.sigmoid((nn.relu(h) @ w.T)[..., 0] + conv.bias[0])


class VADBranch(nn.Module):
    """One sample rate: STFT -> encoder -> LSTM decoder (the JIT's `VADRNNJIT`)."""

    def __init__(self, args: BranchArgs, hidden: int = HIDDEN):
        super().__init__()
        self.args = args
        self.stft = STFT(args)
        chans = (args.n_bins, *ENCODER_CHANNELS)
        self.encoder = [
            SileroVadBlock(chans[i], chans[i + 1], ENCODER_STRIDES[i]) for i in range(4)
        ]
        self.decoder = Decoder(hidden)

    def features(self, x: mx.array) -> mx.array:
        """(B, ctx + n) chunks with context -> (B, H) LSTM inputs (all chunks independent)."""
        return self.encode(self.stft(x))

    def prepare(self) -> None:
        """After loading weights: precompute the fast paths (FFT STFT, tail matmuls)."""
        self.stft.prepare()
        # blocks 2 and 3 see 2 frames and 1 frame: with padding 1, only taps (1, 2) and 1
        # touch data, so each conv is one matmul: (B, 2 * 64) @ (128, 64), (B, 64) @ (64, 128)
        w2 = np.array(self.encoder[2].reparam_conv.weight)  # (O, K, I)
        w3 = np.array(self.encoder[3].reparam_conv.weight)
        tail = (mx.array(np.concatenate([w2[:, 1].T, w2[:, 2].T])), mx.array(w3[:, 1].T.copy()))
        object.__setattr__(self, "_tail", tail)

    def encode(self, y: mx.array) -> mx.array:
        """(B, 4, n_bins) magnitudes -> (B, H) LSTM inputs."""
        tail = self.__dict__.get("_tail")
        if tail is None:
            for block in self.encoder:
                y = block(y)  # (B, 4|2|1|1, C)
            return y[:, -1, :]  # time is 1 after the strides: (B, H)
        y = self.encoder[1](self.encoder[0](y))  # (B, 2, 64)
        y = nn.relu(y.reshape(y.shape[0], -1) @ tail[0] + self.encoder[2].reparam_conv.bias)
        return nn.relu(y @ tail[1] + self.encoder[3].reparam_conv.bias)  # (B, H)

    def __call__(
        self, x: mx.array, h: mx.array, c: mx.array
    ) -> tuple[mx.array, mx.array, mx.array]:
        """One chunk per row: x (B, ctx + n), h, c (B, H) -> probs (B,), h, c."""
        gx = self.decoder.rnn.input_gates(self.features(x))
        h, c = self.decoder.rnn.step(gx, h, c)
        return self.decoder.head(h), h, c


# --- checkpoint names -> ours (one place; safe to run twice) -------------------------------

# silero_vad_16k.safetensors (tinygrad-style names, 16 kHz only) -> JIT-style names
_SAFETENSORS_NAMES = {
    "stft_conv.weight": "model.stft.forward_basis_buffer",
    **{
        f"conv{i + 1}.{p}": f"model.encoder.{i}.reparam_conv.{p}"
        for i in range(4)
        for p in ("weight", "bias")
    },
    **{
        f"lstm_cell.{p}": f"model.decoder.rnn.{p}"
        for p in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    },
    "final_conv.weight": "model.decoder.decoder.2.weight",
    "final_conv.bias": "model.decoder.decoder.2.bias",
}


class SileroVAD(nn.Module):
    """Both branches (16 kHz `model`, 8 kHz `model_8k`); `branch(sr)` picks one."""

    def __init__(self, args: ModelArgs):
        super().__init__()
        self.args = args
        for sr in args.sample_rates:
            if sr not in KNOWN_BRANCHES:
                raise ValueError(
                    f"sample_rates: {sr} is not a Silero VAD branch (expected 16000 and/or 8000)"
                )
            setattr(self, branch_name(sr), VADBranch(KNOWN_BRANCHES[sr], args.hidden_size))

    @property
    def sample_rates(self) -> list[int]:
        return list(self.args.sample_rates)

    def branch(self, sr: int) -> VADBranch:
        from ...errors import AudioError

        if sr not in self.args.sample_rates:
            raise AudioError(
                f"sample rate {sr} Hz: these weights have branches for "
                f"{sorted(self.args.sample_rates)} Hz only"
            )
        return getattr(self, branch_name(sr))

    def sanitize(self, weights: dict[str, Any]) -> dict[str, Any]:
        """JIT (`_model.*`, `_model_8k.*`) or safetensors names -> ours; conv (O, I, K) ->
        (O, K, I).

        Running it on already-sanitized weights changes nothing: renames only match source names,
        and a 3-D weight is transposed only when its shape is the torch layout of this model's.
        Non-parameter entries of a TorchScript archive (`_state`, `_context`) are dropped.
        """
        shapes = param_shapes(self)
        out = {}
        for k, v in weights.items():
            if k in _SAFETENSORS_NAMES:
                k = _SAFETENSORS_NAMES[k]
            elif k.startswith("_model"):
                k = k[1:]
            elif k.startswith("_"):
                continue
            out[k] = channels_last(v, shapes.get(k))
        return out
