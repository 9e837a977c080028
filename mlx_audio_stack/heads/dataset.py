"""Training examples of the heads: cached encoder features + the manifest's labels, batches
padded in time with a mask, and the task-balanced sampler.

Labels per record and task: a class index (multi-class; -1 = no label), a multi-hot row
(multi-label: `extra.events` when present, else the one `labels[task]`), and for frame-level
tasks (speaker count) the `extra.frame_labels` digits mapped onto the heads' frames (a head
frame takes the label of the label frame its centre falls in; -1 past the end).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..data import taxonomy
from ..errors import MasError
from .model import HeadsArgs, TaskSpec


class HeadsDataError(MasError):
    """The manifest, its labels and the feature cache do not fit together."""


@dataclass
class Example:
    rid: str
    split: str
    feats: np.ndarray  # (L, T, C) float16/float32
    labels: dict  # task -> int class index (-1: none) or multi-hot np.ndarray
    frames: dict  # task -> (T,) int frame labels (-1: none)
    soft: dict = field(default_factory=dict)  # task -> (K,) teacher probabilities (distill)


def _frame_labels(rec: dict, n: int, frame_s: float) -> np.ndarray | None:
    ex = rec.get("extra") or {}
    digits = ex.get("frame_labels")
    if not isinstance(digits, str) or not digits:
        return None
    src_s = float(ex.get("frame_seconds", 0.1))
    lab = np.array([int(c) for c in digits], dtype=np.int32)
    idx = np.floor((np.arange(n) + 0.5) * frame_s / src_s + 1e-6).astype(int)  # 0.3/0.1 < 3
    return np.where(idx < lab.size, lab[np.minimum(idx, lab.size - 1)], -1).astype(np.int32)


def record_labels(rec: dict, spec: TaskSpec) -> int | np.ndarray:
    """The target of `rec` for task `spec` (raises HeadsDataError for a label outside it)."""
    lab = (rec.get("labels") or {}).get(spec.name)
    try:
        if spec.multi_label:
            events = (rec.get("extra") or {}).get("events")
            raw = events if isinstance(events, list) else ([lab] if lab is not None else [])
            if not raw:
                return np.full(len(spec.classes), -1, dtype=np.float32)  # unlabelled
            return np.array(taxonomy.multi_hot(spec.name, raw), dtype=np.float32)
        if lab is None:
            return -1
        return spec.classes.index(taxonomy.normalize(spec.name, lab))
    except (taxonomy.TaxonomyError, ValueError) as exc:
        raise HeadsDataError(f"record {rec.get('id')!r}: {exc}") from None


def build_examples(records: list[dict], feats: dict[str, np.ndarray], args: HeadsArgs):
    """One Example per record that has features (every record must have them)."""
    out = []
    for rec in records:
        rid = str(rec["id"])
        f = feats.get(rid)
        if f is None:
            raise HeadsDataError(f"record {rid!r} has no cached features (cache of another run?)")
        if f.shape[0] != args.n_layers or f.shape[2] != args.n_state:
            raise HeadsDataError(
                f"record {rid!r}: features {f.shape}, the heads expect "
                f"({args.n_layers}, T, {args.n_state})"
            )
        labels, frames = {}, {}
        for spec in args.tasks:
            labels[spec.name] = record_labels(rec, spec)
            if spec.frame_level:
                fl = _frame_labels(rec, f.shape[1], args.frame_seconds)
                if fl is not None:
                    frames[spec.name] = fl
        out.append(Example(rid, rec.get("split", "train"), f, labels, frames))
    return out


def withheld_label(spec: TaskSpec) -> int | np.ndarray:
    """The "no label" target of `spec` (-1, or a row of -1 for a multi-label task)."""
    return np.full(len(spec.classes), -1, dtype=np.float32) if spec.multi_label else -1


def has_label(ex: Example, spec: TaskSpec) -> bool:
    y = ex.labels[spec.name]
    return bool(np.all(y >= 0)) if spec.multi_label else y >= 0


def collate(examples: list[Example], args: HeadsArgs) -> dict[str, np.ndarray]:
    """Pad in time: x (B, L, T, C) float32, mask (B, T); per task y_/has_ (+ fy_ frames)."""
    t_max = max(e.feats.shape[1] for e in examples)
    b = len(examples)
    x = np.zeros((b, args.n_layers, t_max, args.n_state), dtype=np.float32)
    mask = np.zeros((b, t_max), dtype=bool)
    for i, e in enumerate(examples):
        t = e.feats.shape[1]
        x[i, :, :t] = e.feats
        mask[i, :t] = True
    batch = {"x": x, "mask": mask}
    for spec in args.tasks:
        has = np.array([has_label(e, spec) for e in examples])
        if spec.multi_label:
            y = np.stack([np.maximum(e.labels[spec.name], 0) for e in examples])
        else:
            y = np.array([max(e.labels[spec.name], 0) for e in examples], dtype=np.int32)
        batch[f"y_{spec.name}"], batch[f"has_{spec.name}"] = y, has
        if spec.frame_level:
            fy = np.full((b, t_max), -1, dtype=np.int32)
            for i, e in enumerate(examples):
                if spec.name in e.frames:
                    fl = e.frames[spec.name]
                    fy[i, : fl.size] = fl
            batch[f"fy_{spec.name}"] = fy
        if any(spec.name in e.soft for e in examples):  # soft labels (distillation)
            k = len(spec.classes)
            batch[f"soft_{spec.name}"] = np.stack(
                [e.soft.get(spec.name, np.full(k, 1.0 / k)) for e in examples]
            ).astype(np.float32)
            batch[f"hassoft_{spec.name}"] = np.array([spec.name in e.soft for e in examples])
    return batch


def balanced_batches(
    examples: list[Example], args: HeadsArgs, batch_size: int, seed: int, epoch: int
) -> list[list[int]]:
    """One epoch of batches, each with an equal share of records labelled for each task
    (hard labels or a teacher's soft labels; a record labelled for several tasks counts for
    the task whose share drew it). Every
    task's records are drawn without replacement and recycled when used up; the epoch ends
    when the largest task has been seen once. Deterministic in (seed, epoch)."""

    def used(e: Example, s: TaskSpec) -> bool:
        return has_label(e, s) or s.name in e.soft

    tasks = [s for s in args.tasks if any(used(e, s) for e in examples)]
    if not tasks:
        raise HeadsDataError("no training record carries a label of the requested tasks")
    pools = [[i for i, e in enumerate(examples) if used(e, s)] for s in tasks]
    share = max(1, batch_size // len(tasks))
    n_batches = max(1, -(-max(len(p) for p in pools) // share))
    streams = []
    for k, pool in enumerate(pools):
        rng = np.random.default_rng([seed, epoch, k])
        reps = -(-n_batches * share // len(pool))
        streams.append(np.concatenate([rng.permutation(pool) for _ in range(reps)]))
    return [
        [int(s[j]) for s in streams for j in range(b * share, (b + 1) * share)]
        for b in range(n_batches)
    ]
