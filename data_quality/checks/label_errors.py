"""Likely label errors from out-of-sample predicted probabilities (confident learning).

Per class j the threshold t_j is the mean predicted probability of j over the records
labelled j (Northcutt et al., 2021). A record is flagged when some other class k reaches its
own threshold (p_k >= t_k) and beats the given label among the classes that do. Reported,
not failed, unless the run asks for it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mlx_audio_stack.data import taxonomy

from ..core import Context, Finding, check
from ._util import rid

MAX_FLAGS = 200


def load_probs(path: str | Path, ids: list[str], classes: tuple[str, ...]) -> np.ndarray:
    """(N, C) probabilities aligned to `ids`. `.npy`: rows in manifest order, columns in
    taxonomy order. `.jsonl`: {"id": ..., "probs": [..] or {label: p}} per line."""
    path = Path(path)
    if path.suffix == ".npy":
        p = np.load(path, allow_pickle=False)
        if p.shape != (len(ids), len(classes)):
            raise ValueError(f"{path}: expected shape {(len(ids), len(classes))}, got {p.shape}")
        return p.astype(np.float64)
    rows = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            d = json.loads(line)
            v = d["probs"]
            rows[str(d["id"])] = [v.get(c, 0.0) for c in classes] if isinstance(v, dict) else v
    missing = [i for i in ids if i not in rows]
    if missing:
        raise ValueError(f"{path}: no probabilities for {len(missing)} records, e.g. {missing[:3]}")
    p = np.asarray([rows[i] for i in ids], dtype=np.float64)
    if p.shape[1] != len(classes):
        raise ValueError(f"{path}: expected {len(classes)} classes {classes}, got {p.shape[1]}")
    return p


def find_label_issues(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Indices of likely mislabelled rows. probs (N, C), labels (N,) class indices."""
    n_cls = probs.shape[1]
    thresh = np.array(
        [probs[labels == j, j].mean() if (labels == j).any() else 1.0 for j in range(n_cls)]
    )  # (C,)
    # a mean of equal values can round one ulp above them: compare with a tolerance
    above = probs >= thresh[None, :] - 1e-9  # (N, C)
    masked = np.where(above, probs, -1.0)
    best = masked.argmax(axis=1)
    return np.flatnonzero(above.any(axis=1) & (best != labels))


@check(
    "label_errors",
    "likely label errors from out-of-sample probabilities (deep, optional)",
    deep_only=True,
)
def label_errors(ctx: Context) -> list[Finding]:
    p = ctx.profile
    if p.label_task is None:
        return []
    item = f"{p.label_task} labels"
    if ctx.probs is None:
        return [
            Finding(
                "label_errors.skipped",
                "info",
                item,
                "out-of-sample probabilities (--probs)",
                "none given",
            )
        ]
    idx = [i for i, r in enumerate(ctx.records) if ctx.label_of(r) is not None]
    labs = [ctx.label_of(ctx.records[i]) for i in idx]
    classes = taxonomy.classes(p.label_task, labs)
    table = {c: k for k, c in enumerate(classes)}
    ids = [rid(ctx.records[i], i) for i in idx]
    try:
        probs = load_probs(
            ctx.probs,
            ids
            if str(ctx.probs).endswith(".jsonl")
            else [rid(r, i) for i, r in enumerate(ctx.records)],
            classes,
        )
    except (OSError, ValueError, KeyError) as exc:
        return [
            Finding(
                "label_errors.probs", "error", str(ctx.probs), "readable probabilities", str(exc)
            )
        ]
    if not str(ctx.probs).endswith(".jsonl"):
        probs = probs[idx]
    y = np.array([table.get(lab, -1) for lab in labs])
    keep = y >= 0
    flagged = find_label_issues(probs[keep], y[keep])
    sev = "error" if ctx.fail_on_label_errors else "warning"
    kept = np.flatnonzero(keep)
    out = [
        Finding(
            "label_errors.likely",
            sev,
            ids[kept[j]],
            f"label {labs[kept[j]]!r}",
            f"model says {classes[int(probs[kept[j]].argmax())]!r} (p={probs[kept[j]].max():.2f})",
        )
        for j in flagged[:MAX_FLAGS]
    ]
    out.append(
        Finding(
            "label_errors.summary",
            "info",
            item,
            "few likely label errors",
            f"{len(flagged)} of {int(keep.sum())} flagged",
        )
    )
    return out
