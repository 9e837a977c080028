"""Whisper (OpenAI) in MLX.

Reference implementation: openai-whisper `whisper/model.py` (PyTorch). Parameter names follow its
state dict (`encoder.blocks.0.attn.query.weight` ...); the deviations (`mlp.0` -> `mlp1`,
`mlp.2` -> `mlp2`, the encoder's sinusoidal buffer dropped, Conv1d `(O, I, K)` -> `(O, K, I)`)
live in `Whisper.sanitize`. Tensors are channels-last: mel `(B, T, n_mels)`, hidden `(B, T, C)`.
The key/value cache is an explicit value: a list with one `(KVCache, (cross_k, cross_v))` per
decoder block, passed in and returned (`attention.KVCache`: the self-attention keys
and values so far; the cross-attention's are computed once per audio). Attention is one
function, `attention.attention`: a CPU kernel where one applies, else its MLX twin.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from ...errors import WeightsError
from ...kernels.dispatch import use_kernels
from ...kernels.elementwise import gelu_, layer_norm
from ...weights_io import channels_last, checked_args
from .attention import KVCache, attention

# sane caps on a config's sizes (the largest official model: 128 mels, 1500/448 contexts,
# width 1280, 20 heads, 32 layers, 51866 tokens)
DIM_LIMITS = {
    "n_mels": (1, 512),
    "n_audio_ctx": (1, 16384),
    "n_audio_state": (1, 32768),
    "n_audio_head": (1, 1024),
    "n_audio_layer": (1, 1024),
    "n_vocab": (1, 10_000_000),
    "n_text_ctx": (1, 65536),
    "n_text_state": (1, 32768),
    "n_text_head": (1, 1024),
    "n_text_layer": (1, 1024),
}


@dataclass
class ModelDimensions:
    """Field names equal openai-whisper's `ModelDimensions` (the `.pt` checkpoint's `dims`)."""

    n_mels: int
    n_audio_ctx: int
    n_audio_state: int
    n_audio_head: int
    n_audio_layer: int
    n_vocab: int
    n_text_ctx: int
    n_text_state: int
    n_text_head: int
    n_text_layer: int

    @classmethod
    def from_dict(
        cls, d: dict[str, Any], where: str = "whisper args", error: type = WeightsError
    ) -> ModelDimensions:
        """Checked against the field types, DIM_LIMITS and `check` (raises `error`)."""
        return checked_args(cls, d, where, error, DIM_LIMITS)

    def check(self) -> None:
        for state, head in (("n_audio_state", "n_audio_head"), ("n_text_state", "n_text_head")):
            if getattr(self, state) % getattr(self, head):
                raise ValueError(
                    f"{state} {getattr(self, state)} is not divisible by {head} "
                    f"{getattr(self, head)}"
                )

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


# The official sizes (openai-whisper `_MODELS`), n_vocab 51864 for `.en`, 51866 for large-v3*.
def _dims(n_mels, state, head, enc, dec, vocab=51865) -> ModelDimensions:
    return ModelDimensions(n_mels, 1500, state, head, enc, vocab, 448, state, head, dec)


OFFICIAL_DIMS = {
    "tiny.en": _dims(80, 384, 6, 4, 4, 51864),
    "tiny": _dims(80, 384, 6, 4, 4),
    "base.en": _dims(80, 512, 8, 6, 6, 51864),
    "base": _dims(80, 512, 8, 6, 6),
    "small.en": _dims(80, 768, 12, 12, 12, 51864),
    "small": _dims(80, 768, 12, 12, 12),
    "medium.en": _dims(80, 1024, 16, 24, 24, 51864),
    "medium": _dims(80, 1024, 16, 24, 24),
    "large-v1": _dims(80, 1280, 20, 32, 32),
    "large-v2": _dims(80, 1280, 20, 32, 32),
    "large-v3": _dims(128, 1280, 20, 32, 32, 51866),
    "large-v3-turbo": _dims(128, 1280, 20, 32, 4, 51866),
}


def sinusoids(length: int, channels: int, max_timescale: float = 10000) -> np.ndarray:
    """The encoder's fixed positional embedding, (length, channels) float32."""
    log_timescale_increment = math.log(max_timescale) / (channels // 2 - 1)
    inv_timescales = np.exp(-log_timescale_increment * np.arange(channels // 2))
    scaled_time = np.arange(length)[:, None] * inv_timescales[None, :]
    return np.concatenate([np.sin(scaled_time), np.cos(scaled_time)], axis=1).astype(np.float32)


@mx.compile
def _layer_norm(x: mx.array, weight: mx.array, bias: mx.array) -> mx.array:
    return mx.fast.layer_norm(x, weight, bias, 1e-5)


class LayerNorm(nn.LayerNorm):
    """nn.LayerNorm (eps 1e-5, affine), compiled on MLX's CPU backend, where `fast.layer_norm`
    runs as separate mean/variance/scale ops: one fused kernel instead took a tiny.en decoding
    step (13 layer norms of one row) from 8.4 to 8.2 ms, median of interleaved runs."""

    def __init__(self, dims: int):
        super().__init__(dims)  # Whisper's eps and affine: the ones `_layer_norm` builds in

    def __call__(self, x: mx.array) -> mx.array:
        if not use_kernels(x):
            return super().__call__(x)
        if x.ndim > 1 and x.shape[-2] >= 256:  # the encoder's (1500, C): a pass per row in C
            return layer_norm(x, self.weight, self.bias, 1e-5)
        return _layer_norm(x, self.weight, self.bias)


class MultiHeadAttention(nn.Module):
    def __init__(self, n_state: int, n_head: int):
        super().__init__()
        self.n_head = n_head
        self.query = nn.Linear(n_state, n_state)
        self.key = nn.Linear(n_state, n_state, bias=False)
        self.value = nn.Linear(n_state, n_state)
        self.out = nn.Linear(n_state, n_state)

    def __call__(
        self,
        x: mx.array,
        xa: mx.array | None = None,
        mask: mx.array | None = None,
        kv_cache: KVCache | tuple | None = None,
    ) -> tuple[mx.array, KVCache | tuple | None]:
        """x (B, T, C) -> (out (B, T, C), cache). Self-attention (xa None): `kv_cache` is the
        `KVCache` of the positions before x's (None: none) and the cache returned holds x's
        too; the encoder (no cache, no mask, T > 1) keeps none and returns None.
        Cross-attention: `kv_cache` is the audio's head-major (keys, values), (B / g, h, S, d)
        contiguous, computed from xa when None and returned: a decoder step then attends
        without first copying a transposed view of them (on MLX's CPU backend that copy of
        the 1500 cross-attention keys and values was two thirds of a block's time)."""
        q = self.query(x)
        if xa is None:
            k, v = self.key(x), self.value(x)  # (B, T, C)
            if kv_cache is None and mask is None and x.shape[1] > 1:  # the encoder
                return self.out(attention(q, k, v, self.n_head)), None
            k, v = self._heads(k), self._heads(v)
            cache = KVCache.of(k, v) if kv_cache is None else kv_cache.append(k, v)
            return self.out(attention(q, cache, None, self.n_head, mask)), cache
        if kv_cache is None:  # cross-attention: computed once per audio, then reused
            k = mx.contiguous(self._heads(self.key(xa)))
            v = mx.contiguous(self._heads(self.value(xa)))
            kv_cache = (k, v)
        return self.out(attention(q, *kv_cache, self.n_head, mask)), kv_cache

    def _heads(self, x: mx.array) -> mx.array:
        """(B, T, C) -> (B, h, T, d), a view."""
        B, T, C = x.shape
        return x.reshape(B, T, self.n_head, C // self.n_head).transpose(0, 2, 1, 3)


class ResidualAttentionBlock(nn.Module):
    def __init__(self, n_state: int, n_head: int, cross_attention: bool = False):
        super().__init__()
        self.attn = MultiHeadAttention(n_state, n_head)
        self.attn_ln = LayerNorm(n_state)
        self.cross_attn = MultiHeadAttention(n_state, n_head) if cross_attention else None
        self.cross_attn_ln = LayerNorm(n_state) if cross_attention else None
        self.mlp1 = nn.Linear(n_state, 4 * n_state)
        self.mlp2 = nn.Linear(4 * n_state, n_state)
        self.mlp_ln = LayerNorm(n_state)

    def __call__(self, x, xa=None, mask=None, kv_cache=None):
        self_kv, cross_kv = kv_cache or (None, None)
        y, self_kv = self.attn(self.attn_ln(x), mask=mask, kv_cache=self_kv)
        x = x + y
        if self.cross_attn is not None:
            y, cross_kv = self.cross_attn(self.cross_attn_ln(x), xa, kv_cache=cross_kv)
            x = x + y
        x = x + self.mlp2(gelu_(self.mlp1(self.mlp_ln(x))))
        return x, (self_kv, cross_kv)


class AudioEncoder(nn.Module):
    def __init__(self, n_mels: int, n_ctx: int, n_state: int, n_head: int, n_layer: int):
        super().__init__()
        self.conv1 = nn.Conv1d(n_mels, n_state, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(n_state, n_state, kernel_size=3, stride=2, padding=1)
        self._positional_embedding = mx.array(sinusoids(n_ctx, n_state))  # buffer, not a param
        self.blocks = [ResidualAttentionBlock(n_state, n_head) for _ in range(n_layer)]
        self.ln_post = LayerNorm(n_state)

    def __call__(
        self, x: mx.array, return_layers: bool = False
    ) -> mx.array | tuple[mx.array, list[mx.array]]:
        """x: (B, n_frames, n_mels) log-mel -> (B, n_frames // 2, n_state). With
        `return_layers`: (that, [each block's output (B, n_frames // 2, n_state)]), the
        residual stream before `ln_post`, which the extra heads (`heads/`) read."""
        x = gelu_(self.conv1(x))
        x = gelu_(self.conv2(x))
        x = x + self._positional_embedding[: x.shape[1]].astype(x.dtype)
        layers = []
        for block in self.blocks:
            x, _ = block(x)
            if return_layers:
                layers.append(x)
        return (self.ln_post(x), layers) if return_layers else self.ln_post(x)


class TextDecoder(nn.Module):
    def __init__(self, n_vocab: int, n_ctx: int, n_state: int, n_head: int, n_layer: int):
        super().__init__()
        self.token_embedding = nn.Embedding(n_vocab, n_state)
        self.positional_embedding = mx.zeros((n_ctx, n_state))
        self.blocks = [
            ResidualAttentionBlock(n_state, n_head, cross_attention=True) for _ in range(n_layer)
        ]
        self.ln = LayerNorm(n_state)
        self._proj_t = None  # (C, n_vocab) layout of the embedding, see prepare_cpu()

    def __call__(
        self,
        tokens: mx.array,
        xa: mx.array,
        kv_cache: list | None = None,
        positions: list[int] | None = None,
    ) -> tuple[mx.array, list]:
        """tokens: (B, T) int; xa: (B / g, n_audio_ctx, C) -> logits (B, T, n_vocab), new cache.
        With g > 1 (beams or best-of samples), rows i*g .. i*g+g-1 of `tokens` decode audio i:
        the cross-attention keys/values are computed and read once per audio, not per beam.
        `positions` (indices into T) limits the output projection to those positions:
        logits (B, len(positions), n_vocab)."""
        offset = kv_cache[0][0].length if kv_cache else 0
        T = tokens.shape[-1]
        x = self.token_embedding(tokens) + self.positional_embedding[offset : offset + T]
        mask = None
        if T > 1:  # causal mask over [cache | new tokens]
            mask = nn.MultiHeadAttention.create_additive_causal_mask(offset + T)[-T:]
            mask = mask.astype(x.dtype)
        cache = kv_cache or [None] * len(self.blocks)
        new_cache = []
        for block, kv in zip(self.blocks, cache):
            x, kv = block(x, xa, mask=mask, kv_cache=kv)
            new_cache.append(kv)
        if positions is not None:
            idx = [p % T for p in positions]
            x = x[:, idx[0] : idx[0] + 1] if len(idx) == 1 else x[:, mx.array(idx)]
        x = self.ln(x)
        if self._proj_t is not None:
            return x @ self._proj_t, new_cache
        return self.token_embedding.as_linear(x), new_cache

    def prepare_cpu(self) -> None:
        """Store the token embedding (n_vocab, C) as its transpose (C, n_vocab), contiguous,
        for MLX's CPU backend (float32, not quantized): the output projection `x @ W.T` then
        streams the weight row by row. With the few-row products (kernels/c/products.c), measured
        in C on this layout against (n_vocab, C), tiny.en: one row 1.2-1.8 vs 3.3 ms, five
        rows 2.3-2.5 vs 5.3 ms. `token_embedding.weight` becomes a transposed view of the new
        array, so the embedding lookup still works and the model holds one copy."""
        if hasattr(self.token_embedding, "scales") or self._proj_t is not None:
            return  # quantized embedding: keep its quantized as_linear; or done already
        self._proj_t = mx.contiguous(self.token_embedding.weight.T)  # (C, n_vocab)
        mx.eval(self._proj_t)
        self.token_embedding.weight = self._proj_t.T  # a view: the (n_vocab, C) copy is freed


class Whisper(nn.Module):
    def __init__(self, dims: ModelDimensions, dtype: mx.Dtype = mx.float32):
        super().__init__()
        self.dims = dims
        self.encoder = AudioEncoder(
            dims.n_mels, dims.n_audio_ctx, dims.n_audio_state, dims.n_audio_head, dims.n_audio_layer
        )
        self.decoder = TextDecoder(
            dims.n_vocab, dims.n_text_ctx, dims.n_text_state, dims.n_text_head, dims.n_text_layer
        )
        self.alignment_heads: list[tuple[int, int]] = []
        self.dtype = dtype

    @property
    def is_multilingual(self) -> bool:
        return self.dims.n_vocab >= 51865

    @property
    def num_languages(self) -> int:
        return self.dims.n_vocab - 51765 - int(self.is_multilingual)

    def embed_audio(self, mel: mx.array, return_layers: bool = False):
        """Encoder output (B, T, C); with `return_layers`, also every block's output."""
        return self.encoder(mel.astype(self.dtype), return_layers)

    def logits(self, tokens: mx.array, audio_features: mx.array, kv_cache=None):
        return self.decoder(tokens, audio_features, kv_cache)

    def __call__(self, mel: mx.array, tokens: mx.array) -> mx.array:
        return self.decoder(tokens, self.embed_audio(mel))[0]

    def sanitize(self, weights: dict[str, Any]) -> dict[str, Any]:
        """openai-whisper state-dict names/layouts -> this module's. Safe to run twice."""
        out = {}
        for k, v in weights.items():
            if k == "encoder.positional_embedding" or k == "alignment_heads":
                continue  # fixed sinusoids (recomputed) / a buffer kept in config.json
            k = k.replace(".mlp.0.", ".mlp1.").replace(".mlp.2.", ".mlp2.")
            if k.endswith(("conv1.weight", "conv2.weight")):
                v = channels_last(v, (v.shape[0], 3, v.shape[1]))  # kernel 3: (O, I, 3)
            out[k] = v
        return out
