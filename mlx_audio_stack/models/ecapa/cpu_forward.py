"""ECAPA-TDNN's forward pass on MLX's CPU backend as BLAS products and a few C passes.

On CPU the model's time is its matrix products (~11 GFLOP per 3 s utterance) plus what runs
between them: ReLU and BatchNorm after every convolution, the squeeze-excitation means and
scaling, the residuals, the concatenation for the multi-layer aggregation and the attentive
pooling's softmax and statistics. As MLX ops those are ~150 single-threaded passes with an
allocation each, about a fifth of a 1 x 3 s pass. Here the products go straight to the BLAS
(`cblas_sgemm`, the library MLX's own matmuls use) and everything between them is one
kernels-library pass on all cores, in place in NumPy buffers:

- a convolution with k > 1 is an im2col (reflection at each utterance's own end) + product;
- bias, ReLU and BatchNorm are one pass over the product (`mas_bias_relu_affine`);
- each SE-Res2Net block writes its output (SE scaling + residual) straight into its slice of
  the multi-layer aggregation's input: no concatenation;
- the attentive pooling's softmax over time and its weighted mean and std are one kernel
  (`mas_attentive_stats`), the attention logits written over the spent aggregation input.

It computes what `ECAPA_TDNN`'s MLX layers compute (tests/test_ecapa_model.py compares the two,
tests/test_ecapa_parity.py compares both with SpeechBrain). `ECAPA_TDNN.prepare` builds it
where it applies: the kernels library loaded and every convolution ungrouped.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from types import SimpleNamespace

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten

from ...kernels.library import library

ROW_MAJOR, NO_TRANS = 101, 111


def _np(x: mx.array) -> np.ndarray:
    """A C-contiguous float32 NumPy array of x (zero-copy when MLX's buffer is one)."""
    mx.eval(x)
    return np.ascontiguousarray(np.asarray(memoryview(x)), dtype=np.float32)


@dataclass
class _Conv:
    """A convolution as a product: w (k * cin, cout), bias (cout,)."""

    w: np.ndarray
    bias: np.ndarray
    k: int
    d: int

    @classmethod
    def of(cls, conv) -> _Conv:
        return cls(_np(conv.matrix()), _np(conv.conv.bias), conv.kernel_size, conv.dilation)

    @property
    def cin(self) -> int:
        return self.w.shape[0] // self.k

    @property
    def cout(self) -> int:
        return self.w.shape[1]


@dataclass
class _Tdnn:
    """Conv -> ReLU -> BatchNorm(scale, shift)."""

    conv: _Conv
    scale: np.ndarray
    shift: np.ndarray

    @classmethod
    def of(cls, block) -> _Tdnn:
        scale, shift = block.norm.affine()
        return cls(_Conv.of(block.conv), _np(scale), _np(shift))


def _res2net_args(block) -> SimpleNamespace:
    """A Res2Net block's chunk weights as `mas_res2net` takes them: ctypes arrays of the
    addresses (`ptrs`: (k*c, c) matrices, biases, BatchNorm scales, shifts) of float32 arrays
    (`keep`, alive as long as this)."""
    keep, ptrs = [], {"w": [], "bias": [], "scale": [], "shift": []}
    for blk in block.blocks:
        for key, arr in zip(ptrs, (blk.conv.matrix(), blk.conv.conv.bias, *blk.norm.affine())):
            keep.append(_np(arr))
            ptrs[key].append(keep[-1].ctypes.data)
    return SimpleNamespace(keep=keep, ptrs=[(ctypes.c_void_p * len(v))(*v) for v in ptrs.values()])


def _ptr(a: np.ndarray | None) -> int | None:
    return None if a is None else a.ctypes.data


class CpuForward:
    """Features (B, T, F) -> embeddings (B, lin_neurons), NumPy in and out. Holds NumPy views
    of the prepared model's weights; rebuild it after the weights change (`prepare` does)."""

    def __init__(self, model, fast: ctypes.CDLL):
        self.fast = fast
        self.block0 = _Tdnn.of(model.blocks[0])
        self.blocks = []
        for blk in model.blocks[1:]:
            r2 = blk.res2net_block
            self.blocks.append(
                SimpleNamespace(
                    tdnn1=_Tdnn.of(blk.tdnn1),
                    tdnn2=_Tdnn.of(blk.tdnn2),
                    shortcut=_Conv.of(blk.shortcut) if "shortcut" in blk else None,
                    se1=_Conv.of(blk.se_block.conv1),
                    se2=_Conv.of(blk.se_block.conv2),
                    scale=r2.scale,
                    r2k=r2.blocks[0].conv.kernel_size,
                    r2d=r2.blocks[0].conv.dilation,
                    r2args=_res2net_args(r2),
                )
            )
        self.mfa = _Tdnn.of(model.mfa)
        asp = model.asp
        self.global_context = asp.global_context
        self.att = _Tdnn.of(asp.tdnn)
        if self.global_context:
            wx = self.att.conv.w  # (3C, A): rows for x, its mean, its std
            c = wx.shape[0] // 3
            self.att_x, self.att_m, self.att_s = wx[:c], wx[c : 2 * c], wx[2 * c :]
        self.att_conv = _Conv.of(asp.conv)
        scale, shift = model.asp_bn.affine()
        self.bn_scale, self.bn_shift = _np(scale), _np(shift)
        self.fc = _Conv.of(model.fc)

    @classmethod
    def build(cls, model) -> CpuForward | None:
        """The CPU forward for the prepared `model`, or None where it does not apply."""
        fast = library()
        if fast is None or any(g != 1 for g in model.args.groups):
            return None
        if any(p.dtype != mx.float32 for _, p in tree_flatten(model.parameters())):
            return None
        return cls(model, fast)

    # --- pieces ---

    def _gemm(self, a: np.ndarray, lda: int, k: int, w: np.ndarray, out: np.ndarray, ldo: int,
              rows: int, beta: float = 0.0) -> None:  # fmt: skip
        """out[:rows, :n] = a[:rows, :k] @ w (k, n) (+ out when beta is 1), row strides lda and
        ldo. Every product goes here, never to NumPy's `@`: NumPy has a BLAS of its own, whose
        idle threads would spin against this one's (a 1 x 3 s pass took 2x as long)."""
        n = w.shape[1]
        self.fast.cblas_sgemm(
            ROW_MAJOR, NO_TRANS, NO_TRANS, rows, n, k, 1.0, a.ctypes.data, lda, w.ctypes.data, n,
            beta, out.ctypes.data, ldo,
        )  # fmt: skip

    def _matmul(self, a: np.ndarray, w: np.ndarray) -> np.ndarray:
        """a (rows, k) contiguous @ w (k, n) through `_gemm`."""
        out = np.empty((a.shape[0], w.shape[1]), np.float32)
        self._gemm(a, a.shape[1], a.shape[1], w, out, w.shape[1], a.shape[0])
        return out

    def _conv(self, conv: _Conv, x: np.ndarray, ldx: int, shape: tuple[int, int], frames):
        """conv over x ((B * T, cin) values from x's first element on, row stride ldx: x may
        be a column slice) without its bias, into a new (B * T, cout) array; im2col first when
        k > 1."""
        b, t = shape
        out = np.empty((b * t, conv.cout), np.float32)
        if conv.k > 1:
            col = np.empty((b * t, conv.k * conv.cin), np.float32)
            self.fast.mas_im2col(x.ctypes.data, ldx, b, t, conv.cin, conv.k, conv.d, frames,
                                 col.ctypes.data)  # fmt: skip
            x, ldx = col, col.shape[1]
        self._gemm(x, ldx, conv.w.shape[0], conv.w, out, conv.cout, b * t)
        return out

    def _post(self, y: np.ndarray, rows: int, ldy: int, tdnn: _Tdnn, bias=None, tanh=False):
        n = tdnn.conv.cout
        self.fast.mas_bias_relu_affine(
            y.ctypes.data, rows, n, ldy, (tdnn.conv.bias if bias is None else bias).ctypes.data,
            tdnn.scale.ctypes.data, tdnn.shift.ctypes.data, int(tanh),
        )  # fmt: skip

    def _tdnn(self, tdnn: _Tdnn, x: np.ndarray, ldx: int, shape, frames) -> np.ndarray:
        y = self._conv(tdnn.conv, x, ldx, shape, frames)
        self._post(y, shape[0] * shape[1], tdnn.conv.cout, tdnn)
        return y

    def _stats(self, x: np.ndarray, ldx: int, shape, n: int, w, eps: float, std: bool):
        b, t = shape
        mean = np.empty((b, n), np.float32)
        sd = np.empty((b, n), np.float32) if std else None
        self.fast.mas_time_stats(x.ctypes.data, ldx, b, t, n, _ptr(w), eps, mean.ctypes.data,
                                 _ptr(sd))  # fmt: skip
        return mean, sd

    # --- the pass ---

    def __call__(
        self, feats: np.ndarray, w: np.ndarray | None = None, frames: np.ndarray | None = None
    ) -> np.ndarray:
        """feats (B, T, F) float32; w (B, T) statistics weights summing to 1 per utterance
        (None: uniform over T); frames (B,) valid counts for per-utterance reflection (None: at
        T). Returns (B, lin_neurons) float32."""
        fast = self.fast
        b, t, f = feats.shape
        shape, rows = (b, t), b * t
        feats = np.ascontiguousarray(feats, np.float32)
        w = None if w is None else np.ascontiguousarray(w, np.float32)
        fr = None if frames is None else np.ascontiguousarray(frames, np.int64)
        frp = _ptr(fr)
        x = self._tdnn(self.block0, feats, f, shape, frp)
        ldx = x.shape[1]
        widths = [blk.tdnn2.conv.cout for blk in self.blocks]
        cat = np.empty((rows, sum(widths)), np.float32)  # the aggregation's input
        off = 0
        for blk, width in zip(self.blocks, widths):
            if blk.shortcut is not None:
                res = self._conv(blk.shortcut, x, ldx, shape, frp)
                res += blk.shortcut.bias
                res_ld = width
            else:
                res, res_ld = x, ldx
            h = self._tdnn(blk.tdnn1, x, ldx, shape, frp)
            c = h.shape[1] // blk.scale
            failed = fast.mas_res2net(h.ctypes.data, b, t, blk.scale, c, blk.r2k, blk.r2d, frp,
                                      *blk.r2args.ptrs)  # fmt: skip
            if failed:
                raise MemoryError("out of memory for the Res2Net block's scratch buffers")
            h = self._tdnn(blk.tdnn2, h, h.shape[1], shape, frp)
            s, _ = self._stats(h, width, shape, width, w, 0.0, std=False)
            z = np.maximum(self._matmul(s, blk.se1.w) + blk.se1.bias, 0.0)
            z = self._matmul(z, blk.se2.w) + blk.se2.bias
            e = np.exp(-np.abs(z))  # sigmoid without overflow: (B, width)
            g = np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(np.float32)
            out = cat[:, off:]  # its row stride is cat's
            fast.mas_scale_add(out.ctypes.data, cat.shape[1], h.ctypes.data, width, g.ctypes.data,
                               res.ctypes.data, res_ld, b, t, width)  # fmt: skip
            x, ldx = out, cat.shape[1]
            off += width
        x = self._tdnn(self.mfa, cat, cat.shape[1], shape, frp)  # (rows, C)
        c = x.shape[1]
        att = self.att
        na = att.conv.cout
        if self.global_context:
            mean, sd = self._stats(x, c, shape, c, w, 1e-12, std=True)
            ctx = self._matmul(mean, self.att_m)
            self._gemm(sd, c, c, self.att_s, ctx, na, b, beta=1.0)
            ctx += att.conv.bias
            h = np.empty((rows, na), np.float32)
            self._gemm(x, c, c, self.att_x, h, na, rows)
            for i in range(b):  # bias: the utterance's mean/std context
                self._post(h[i * t :], t, na, att, bias=ctx[i], tanh=True)
        else:
            h = self._conv(att.conv, x, c, shape, frp)
            self._post(h, rows, na, att, tanh=True)
        logits = cat if cat.shape[1] == c else np.empty((rows, c), np.float32)
        self._gemm(h, na, na, self.att_conv.w, logits, c, rows)
        mean = np.empty((b, c), np.float32)
        sd = np.empty((b, c), np.float32)
        fast.mas_attentive_stats(
            logits.ctypes.data, self.att_conv.bias.ctypes.data, x.ctypes.data, c, b, t, c,
            _ptr(w), 1e-12, mean.ctypes.data, sd.ctypes.data,
        )  # fmt: skip
        pooled = np.concatenate([mean, sd], axis=1) * self.bn_scale + self.bn_shift
        return self._matmul(pooled, self.fc.w) + self.fc.bias
