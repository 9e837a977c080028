"""Extra heads on the Whisper encoder: emotion, paralinguistic events, speaker count, gender,
speaking rate, from the same encoder pass as the transcript.

Design after whisper-at (Gong et al., 2023, "Whisper-AT"; its `TLTR` 'wa_*' variants): every
encoder block's output is kept, mean-pooled in time, and a learned softmax-weighted average
over the layers feeds a small classifier. Here each task has its own layer weights (gender
sits in lower layers than emotion) and pools over time with attention instead of a mean:

    layers (B, L, T, C), T at 50 Hz / pool   (`pool_time` of the encoder's block outputs)
      -> per layer: LayerNorm without affine (layers differ in scale by orders of magnitude)
      -> per task: softmax(w)[L] weighted sum                  (B, T, C)
         -> Linear C->H, GELU                                   (B, T, H)
         -> attention pooling: softmax_T(Linear H->1), masked   (B, H)
         -> Linear H->K: segment logits                         (B, K)
         -> (frame-level tasks) Linear H->K per frame           (B, T, K)
Multi-class tasks read the logits through softmax, multi-label ones through a sigmoid.

Cost (`heads_flops` vs `encoder_flops`, multiply-adds counted as 2 FLOPs, 30 s window,
default pool 5 and hidden 128, all five tasks): whisper-base encoder 87.4 GFLOP, heads
0.216 GFLOP (0.25 %); tiny 36.9 vs 0.158 GFLOP (0.43 %); small 0.10 %; large-v3 0.03 %.
`tests/test_heads_model.py` recomputes these and holds them under 2 %.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import mlx.core as mx
import mlx.nn as nn

from ..data import taxonomy
from ..errors import WeightsError

MODEL_TYPE = "whisper_heads"
FRAME_RATE = 50  # Whisper encoder positions per second (20 ms)


@dataclass
class TaskSpec:
    """One head: its taxonomy task, classes (index order), multi-label or not, frame output."""

    name: str
    classes: list[str]
    multi_label: bool = False
    frame_level: bool = False

    @classmethod
    def from_taxonomy(cls, name: str) -> TaskSpec:
        t = taxonomy.get_task(name)
        if t.classes is None:
            raise WeightsError(f"heads: task {name!r} is an open set; heads need fixed classes")
        return cls(name, list(t.classes), t.multi_label, t.frame_level)


@dataclass
class HeadsArgs:
    """config.json's `args`: the encoder's layer count and width, head sizes, the tasks."""

    n_layers: int
    n_state: int
    hidden: int = 128
    pool: int = 5  # encoder frames per head frame: 5 x 20 ms = 0.1 s
    tasks: list[TaskSpec] = field(default_factory=list)

    @property
    def frame_seconds(self) -> float:
        return self.pool / FRAME_RATE

    def task(self, name: str) -> TaskSpec:
        for t in self.tasks:
            if t.name == name:
                return t
        raise WeightsError(f"heads: no task {name!r}; these heads have {self.task_names}")

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Any, where: str = "heads config") -> HeadsArgs:
        if not isinstance(d, dict):
            raise WeightsError(f"{where}: args must be an object, got {type(d).__name__}")
        try:
            tasks = [TaskSpec(**t) for t in d.get("tasks", [])]
            args = cls(**{**d, "tasks": tasks})
        except TypeError as exc:
            raise WeightsError(f"{where}: bad args ({exc})") from None
        for k in ("n_layers", "n_state", "hidden", "pool"):
            v = getattr(args, k)
            if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= 65536:
                raise WeightsError(f"{where}: {k} must be an integer in 1..65536, got {v!r}")
        if not args.tasks:
            raise WeightsError(f"{where}: no tasks")
        for t in args.tasks:
            if not t.classes or len(set(t.classes)) != len(t.classes):
                raise WeightsError(f"{where}: task {t.name!r} needs distinct classes")
        return args


def pool_time(layers: mx.array, pool: int, n_valid: int | None = None) -> mx.array:
    """Mean over groups of `pool` encoder frames: (..., T, C) -> (..., ceil(n / pool), C), where
    n = `n_valid` (the frames that hold audio; the rest of a 30 s window is padding). The last
    group averages only the frames it has."""
    t = layers.shape[-2] if n_valid is None else min(n_valid, layers.shape[-2])
    x = layers[..., :t, :]
    n_out = math.ceil(t / pool)
    pad = n_out * pool - t
    if not pad:  # a whole 30 s window: one reshape and mean (a third of the time)
        return x.reshape(*x.shape[:-2], n_out, pool, x.shape[-1]).mean(-2)
    if pad:
        x = mx.concatenate([x, mx.zeros((*x.shape[:-2], pad, x.shape[-1]), x.dtype)], axis=-2)
    x = x.reshape(*x.shape[:-2], n_out, pool, x.shape[-1]).sum(-2)  # (..., n_out, C)
    counts = mx.full((n_out,), pool, dtype=x.dtype)
    if pad:
        counts = mx.concatenate([counts[:-1], mx.array([pool - pad], dtype=x.dtype)])
    return x / counts[:, None]


class TaskHead(nn.Module):
    def __init__(self, n_layers: int, n_state: int, hidden: int, spec: TaskSpec):
        super().__init__()
        k = len(spec.classes)
        self.layer_logits = mx.zeros((n_layers,))  # softmax -> layer weights, uniform at start
        self.proj = nn.Linear(n_state, hidden)
        self.att = nn.Linear(hidden, 1)
        self.out = nn.Linear(hidden, k)
        self.frame_out = nn.Linear(hidden, k) if spec.frame_level else None

    def __call__(self, x: mx.array, mask: mx.array | None) -> dict[str, mx.array]:
        """x: (B, L, T, C) layer-normalized features; mask (B, T) True where audio."""
        w = mx.softmax(self.layer_logits)  # (L,)
        h = mx.einsum("bltc,l->btc", x, w)  # (B, T, C)
        h = nn.gelu(self.proj(h))  # (B, T, H)
        s = self.att(h)[..., 0]  # (B, T)
        if mask is not None:
            s = mx.where(mask, s, mx.array(-1e9, s.dtype))
        a = mx.softmax(s, axis=-1)  # (B, T)
        pooled = mx.einsum("bt,bth->bh", a, h)  # (B, H)
        out = {"logits": self.out(pooled)}
        if self.frame_out is not None:
            out["frame_logits"] = self.frame_out(h)  # (B, T, K)
        return out


class WhisperHeads(nn.Module):
    """All heads; `__call__(layers, mask)` -> {task: {"logits", ["frame_logits"]}}."""

    def __init__(self, args: HeadsArgs):
        super().__init__()
        self.args = args
        self.heads = {
            t.name: TaskHead(args.n_layers, args.n_state, args.hidden, t) for t in args.tasks
        }

    def __call__(
        self, layers: mx.array, mask: mx.array | None = None
    ) -> dict[str, dict[str, mx.array]]:
        """layers: (B, L, T, C) pooled encoder block outputs (`pool_time`); mask: (B, T) bool,
        True on frames that hold audio (None: all)."""
        if layers.shape[1] != self.args.n_layers or layers.shape[-1] != self.args.n_state:
            raise WeightsError(
                f"heads: expected features (B, {self.args.n_layers}, T, {self.args.n_state}), "
                f"got {tuple(layers.shape)} (features of another Whisper size?)"
            )
        x = mx.fast.layer_norm(layers.astype(mx.float32), None, None, 1e-5)
        return {name: head(x, mask) for name, head in self.heads.items()}

    def predict(
        self, layers: mx.array, mask: mx.array | None = None
    ) -> dict[str, dict[str, mx.array]]:
        """Probabilities: softmax (multi-class) or sigmoid (multi-label) of every output."""
        out = {}
        for name, o in self(layers, mask).items():
            spec = self.args.task(name)
            f = mx.sigmoid if spec.multi_label else (lambda z: mx.softmax(z, axis=-1))
            out[name] = {k.replace("logits", "probs"): f(v) for k, v in o.items()}
        return out


def encoder_flops(n_mels: int, n_state: int, n_layers: int, seconds: float = 30.0) -> float:
    """FLOPs of the Whisper encoder on `seconds` of audio (2 per multiply-add; matmuls and
    convs only: layer norms, GELU and softmax add < 1 %)."""
    t_mel = int(seconds * 100)
    t = t_mel // 2
    c = n_state
    convs = 2 * t_mel * 3 * n_mels * c + 2 * t * 3 * c * c
    block = 2 * t * c * c * 4 + 2 * 2 * t * t * c + 2 * t * c * 4 * c * 2  # qkvo, attn, mlp
    return float(convs + n_layers * block)


def heads_flops(args: HeadsArgs, seconds: float = 30.0) -> float:
    """FLOPs of the heads on `seconds` of audio, counted the same way, including the layer
    norm (5 per element), the layer weighting and the time pooling of the encoder outputs."""
    t_enc = int(seconds * FRAME_RATE)
    t = math.ceil(t_enc / args.pool)
    L, C, H = args.n_layers, args.n_state, args.hidden
    total = L * t_enc * C + 5 * L * t * C  # pool_time sums, the per-layer norm
    for spec in args.tasks:
        k = len(spec.classes)
        total += 2 * L * t * C + 2 * t * C * H + 2 * t * H + 2 * t * H + 2 * H * k
        if spec.frame_level:
            total += 2 * t * H * k
    return float(total)
