"""Speaker-verification metrics: equal error rate and minimum detection cost over target and
non-target trial scores, and trial lists built from a fixed seed (tools/eval_verification.py).

Numpy only; scores come from `models.ecapa.scoring` (cosine, cohort normalization).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def _error_curves(
    target: np.ndarray, nontarget: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Miss and false-alarm rates at every threshold between sorted scores.

    Decision: accept when score >= threshold. Returns (thresholds, p_miss, p_fa), with one
    threshold below all scores (accept all) and one above (reject all).
    """
    target, nontarget = np.asarray(target, np.float64), np.asarray(nontarget, np.float64)
    if target.size == 0 or nontarget.size == 0:
        raise ValueError(
            f"need target and non-target scores, got {target.size} and {nontarget.size}"
        )
    scores = np.concatenate([target, nontarget])
    labels = np.concatenate([np.ones(target.size), np.zeros(nontarget.size)])
    order = np.argsort(scores, kind="mergesort")
    scores, labels = scores[order], labels[order]
    # threshold just above each distinct score: everything <= it is rejected
    uniq_last = np.r_[scores[1:] != scores[:-1], True]
    miss = np.cumsum(labels)[uniq_last] / target.size
    fa = 1.0 - np.cumsum(1 - labels)[uniq_last] / nontarget.size
    thr = np.r_[scores[0] - 1.0, scores[uniq_last]]
    return thr, np.r_[0.0, miss], np.r_[1.0, fa]


def compute_eer(target: Sequence[float], nontarget: Sequence[float]) -> tuple[float, float]:
    """Equal error rate and its threshold (rates interpolated where the curves cross)."""
    thr, p_miss, p_fa = _error_curves(np.asarray(target), np.asarray(nontarget))
    d = p_miss - p_fa  # rises from -1 to +1
    i = int(np.argmax(d >= 0))
    if i == 0 or d[i] == 0:
        return float(p_miss[i]), float(thr[i])
    # linear interpolation between step i-1 (miss < fa) and i (miss >= fa)
    w = -d[i - 1] / (d[i] - d[i - 1])
    eer = p_miss[i - 1] + w * (p_miss[i] - p_miss[i - 1])
    return float(eer), float(thr[i - 1] + w * (thr[i] - thr[i - 1]))


def compute_min_dcf(
    target: Sequence[float],
    nontarget: Sequence[float],
    p_target: float = 0.01,
    c_miss: float = 1.0,
    c_fa: float = 1.0,
) -> tuple[float, float]:
    """Minimum normalized detection cost (NIST SRE) and its threshold.

    DCF = c_miss p_miss p_target + c_fa p_fa (1 - p_target), normalized by the cost of the best
    trivial system min(c_miss p_target, c_fa (1 - p_target)).
    """
    thr, p_miss, p_fa = _error_curves(np.asarray(target), np.asarray(nontarget))
    dcf = c_miss * p_miss * p_target + c_fa * p_fa * (1 - p_target)
    i = int(np.argmin(dcf))
    norm = min(c_miss * p_target, c_fa * (1 - p_target))
    return float(dcf[i] / norm), float(thr[i])


@dataclass
class Trial:
    enroll: int  # index into the utterance list
    test: int
    target: bool


def make_trials(
    speakers: Sequence[str],
    n_nontarget: int | None = None,
    seed: int = 0,
    impostor_only: Sequence[bool] | None = None,
) -> list[Trial]:
    """Trials over utterances labelled by `speakers`: every same-speaker pair is a target
    trial; `n_nontarget` (default: as many as target trials) different-speaker pairs are
    drawn with `seed` (without repetition). `impostor_only[i]` marks utterances that only
    appear in non-target trials (e.g. speakers with a single utterance)."""
    spk = list(speakers)
    n = len(spk)
    imp = list(impostor_only) if impostor_only is not None else [False] * n
    target = [
        Trial(i, j, True)
        for i in range(n)
        for j in range(i + 1, n)
        if spk[i] == spk[j] and not imp[i] and not imp[j]
    ]
    want = len(target) if n_nontarget is None else n_nontarget
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n) if spk[i] != spk[j]]
    if want > len(pairs):
        raise ValueError(f"n_nontarget {want} > {len(pairs)} possible different-speaker pairs")
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(pairs), size=want, replace=False)
    nontarget = [Trial(*pairs[k], False) for k in sorted(pick)]
    return target + nontarget
