"""MossFormer2's single-head gated attention (reference: `FLASH_ShareA_FFConvM` in
`mossformer2_block.py`, after lucidrains' FLASH), channels-last.

Per group of `group_size` frames a quadratic attention relu(q k^T / g)^2, plus a linear
attention over the whole sequence; values v and gates u share the attention weights. v and u
are the two halves of one hidden projection, so both are computed by one matmul against the
concatenated (v | u) hidden state.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from .layers import FFConvM, gate


class RotaryEmbedding(nn.Module):
    """rotary-embedding-torch's `RotaryEmbedding(dim)` (interleaved pairs) on the first
    `2 * len(freqs)` features; positions along axis 1. `freqs` is stored in checkpoints."""

    def __init__(self, dim: int, theta: float = 10000.0):
        super().__init__()
        self.freqs = 1.0 / (theta ** (mx.arange(0, dim, 2, dtype=mx.float32) / dim))

    def __call__(self, x: mx.array, offset: int = 0) -> mx.array:
        # x: (B, N, ..., D); rotates x[..., :rot] by position index along axis 1
        n = x.shape[1]
        rot = 2 * self.freqs.shape[0]
        pos = mx.arange(offset, offset + n, dtype=mx.float32)
        ang = pos[:, None] * self.freqs[None, :]  # (N, rot/2)
        shape = (n,) + (1,) * (x.ndim - 3) + (rot // 2,)
        cos, sin = mx.cos(ang).reshape(shape), mx.sin(ang).reshape(shape)
        mid = x[..., :rot].reshape(*x.shape[:-1], rot // 2, 2)  # (..., rot/2, 2) pairs
        x1, x2 = mid[..., 0], mid[..., 1]
        r1 = x1 * cos - x2 * sin
        r2 = x2 * cos + x1 * sin
        out = mx.stack([r1, r2], axis=-1).reshape(*x.shape[:-1], rot)
        return mx.concatenate([out, x[..., rot:]], axis=-1)


class OffsetScale(nn.Module):
    """x * gamma[h] + beta[h] for each of `heads` heads: (..., D) -> (..., H, D)."""

    def __init__(self, dim: int, heads: int = 4):
        super().__init__()
        self.gamma = mx.ones((heads, dim))
        self.beta = mx.zeros((heads, dim))

    def __call__(self, x: mx.array) -> mx.array:
        return x[..., None, :] * self.gamma + self.beta


class FLASHShareAFFConvM(nn.Module):
    """Token shift -> (v|u) and qk projections -> mixed quadratic/linear attention -> gate."""

    def __init__(
        self,
        dim: int,
        group_size: int = 256,
        query_key_dim: int = 128,
        expansion_factor: float = 4.0,
        norm: str = "scalenorm",
        shift_tokens: bool = True,
        kernel_size: int = 17,
    ):
        super().__init__()
        hidden_dim = int(dim * expansion_factor)
        self.group_size = group_size
        self.shift_tokens = shift_tokens
        self.rotary_pos_emb = RotaryEmbedding(min(32, query_key_dim))
        self.to_hidden = FFConvM(dim, hidden_dim, norm, kernel_size)
        self.to_qk = FFConvM(dim, query_key_dim, norm, kernel_size)
        self.qk_offset_scale = OffsetScale(query_key_dim, heads=4)
        self.to_out = FFConvM(dim * 2, dim, norm, kernel_size)

    def __call__(self, x: mx.array) -> mx.array:
        residual = x  # (B, N, D)
        if self.shift_tokens:
            half = x.shape[-1] // 2
            shifted = mx.pad(x[:, :-1, :half], [(0, 0), (1, 0), (0, 0)])
            x = mx.concatenate([shifted, x[:, :, half:]], axis=-1)
        hidden = self.to_hidden(x)  # (B, N, 2E): v | u
        qk = self.qk_offset_scale(self.to_qk(x))  # (B, N, 4, Dq)
        qk = self.rotary_pos_emb(qk)
        att = self.attention(qk, hidden)
        return residual + self.to_out(gate(att, hidden))

    def attention(self, qk: mx.array, hidden: mx.array) -> mx.array:
        """qk: (B, N, 4, Dq) = quad_q, lin_q, quad_k, lin_k; hidden: (B, N, 2E) -> (B, N, 2E)."""
        b, n, _, dq = qk.shape
        g = self.group_size
        quad_q, lin_q, quad_k, lin_k = (qk[:, :, i] for i in range(4))  # (B, N, Dq)
        # linear attention over the whole (unpadded) sequence: q (k^T h) / n
        kv = mx.matmul(lin_k.transpose(0, 2, 1), hidden) * (1.0 / n)  # (B, Dq, 2E)
        # quadratic attention within groups of g frames; zero padding adds nothing
        pad = (-n) % g
        if pad:
            quad_q, quad_k, lin_q, hidden = (
                mx.pad(t, [(0, 0), (0, pad), (0, 0)]) for t in (quad_q, quad_k, lin_q, hidden)
            )
        ng = (n + pad) // g
        lin_out = (lin_q @ kv).reshape(b, ng, g, -1)  # (B, G, g, 2E)
        qg = quad_q.reshape(b, ng, g, dq)  # (B, G, g, Dq)
        kg = quad_k.reshape(b, ng, g, dq)
        hg = hidden.reshape(b, ng, g, -1)  # (B, G, g, 2E)
        sim = (qg @ kg.transpose(0, 1, 3, 2)) * (1.0 / g)  # (B, G, g, g)
        attn = mx.square(nn.relu(sim))
        out = mx.addmm(lin_out, attn, hg)  # attn @ h + linear part, one BLAS call per group
        return out.reshape(b, ng * g, -1)[:, :n]  # (B, N, 2E)
