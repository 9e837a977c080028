"""Per-task metrics of the heads (NumPy): accuracy, macro-F1, confusion matrix, average
precision / mAP for multi-label tasks."""

from __future__ import annotations

import numpy as np


def confusion(y: np.ndarray, pred: np.ndarray, k: int) -> np.ndarray:
    """(k, k) counts, rows = true class, columns = predicted."""
    m = np.zeros((k, k), dtype=np.int64)
    np.add.at(m, (y.astype(int), pred.astype(int)), 1)
    return m


def macro_f1(cm: np.ndarray) -> float:
    """Mean F1 over the classes that occur in the truth or the predictions."""
    tp = np.diag(cm).astype(float)
    p_den, r_den = cm.sum(0).astype(float), cm.sum(1).astype(float)
    present = (p_den + r_den) > 0
    if not present.any():
        return 0.0
    f1 = np.where(p_den + r_den > 0, 2 * tp / np.maximum(p_den + r_den, 1e-12), 0.0)
    return float(f1[present].mean())


def average_precision(scores: np.ndarray, truth: np.ndarray) -> float:
    """AP of one class: mean precision at each positive, ranked by score (ties by index)."""
    order = np.argsort(-scores, kind="stable")
    t = truth[order].astype(bool)
    if not t.any():
        return float("nan")
    hits = np.cumsum(t)
    prec = hits / np.arange(1, t.size + 1)
    return float(prec[t].mean())


def mean_average_precision(scores: np.ndarray, truth: np.ndarray) -> float:
    """mAP over the classes with at least one positive: scores, truth (N, K)."""
    aps = [average_precision(scores[:, j], truth[:, j]) for j in range(truth.shape[1])]
    aps = [a for a in aps if not np.isnan(a)]
    return float(np.mean(aps)) if aps else float("nan")


def classification_metrics(y: np.ndarray, probs: np.ndarray) -> dict:
    """accuracy, macro_f1, confusion (list of lists), n for a multi-class task."""
    k = probs.shape[-1]
    pred = probs.argmax(-1)
    cm = confusion(y, pred, k)
    return {
        "n": int(y.size),
        "accuracy": float(np.mean(pred == y)) if y.size else float("nan"),
        "macro_f1": macro_f1(cm),
        "confusion": cm.tolist(),
    }


def multilabel_metrics(truth: np.ndarray, probs: np.ndarray, threshold: float = 0.5) -> dict:
    """mAP, and micro-F1 at `threshold`, for a multi-label task."""
    hyp = probs >= threshold
    t = truth.astype(bool)
    tp = float(np.sum(hyp & t))
    p = tp / max(1.0, float(hyp.sum()))
    r = tp / max(1.0, float(t.sum()))
    return {
        "n": int(truth.shape[0]),
        "mAP": mean_average_precision(probs, truth),
        "micro_f1": 2 * p * r / max(1e-12, p + r),
    }
