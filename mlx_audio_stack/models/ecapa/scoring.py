"""Scoring speaker embeddings: cosine similarity (as SpeechBrain's `verify_batch`), cohort
score normalization (Z-, T-, S-norm and adaptive S-norm), and verification metrics
(EER, minDCF) with trial lists built from a fixed seed.

Everything here is numpy on (N, D) float arrays: embeddings are small, and the metrics must
not depend on a framework.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

DEFAULT_THRESHOLD = 0.25  # SpeechBrain SpeakerRecognition.verify_batch default
COS_EPS = 1e-6  # torch.nn.CosineSimilarity(eps=1e-6) as SpeechBrain uses it


def _unit(x: np.ndarray, eps: float = COS_EPS) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), eps)


def cosine_score(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of (N, D) and (N, D) (or (D,) and (D,)) embeddings."""
    return np.sum(_unit(a) * _unit(b), axis=-1)


def cosine_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, D) x (M, D) -> (N, M) cosine similarities."""
    return _unit(np.atleast_2d(a)) @ _unit(np.atleast_2d(b)).T


def normalize_scores(
    scores: np.ndarray,
    enroll: np.ndarray,
    test: np.ndarray,
    cohort: np.ndarray,
    method: str = "s-norm",
    top_k: int | None = None,
) -> np.ndarray:
    """Cohort score normalization of raw cosine `scores` (N,) for trials (enroll[i], test[i]).

    method: "z-norm" (statistics of the enrollment side against the cohort), "t-norm" (test
    side), "s-norm" (average of both). `top_k`: only the k highest cohort scores of each side
    count (adaptive S-norm, as SpeechBrain's verification recipe does).
    """
    if method not in ("z-norm", "t-norm", "s-norm"):
        raise ValueError(f"method: expected z-norm, t-norm or s-norm, got {method!r}")
    cohort = np.atleast_2d(cohort)
    if cohort.shape[0] < 2:
        raise ValueError(f"cohort: need at least 2 embeddings, got {cohort.shape[0]}")
    if top_k is not None and not 1 < top_k <= cohort.shape[0]:
        raise ValueError(f"top_k: expected 2..{cohort.shape[0]} (cohort size), got {top_k}")

    def stats(side: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s = cosine_matrix(side, cohort)  # (N, cohort)
        if top_k is not None:
            s = -np.sort(-s, axis=1)[:, :top_k]
        return s.mean(axis=1), np.maximum(s.std(axis=1), 1e-12)

    scores = np.asarray(scores, np.float64)
    out = np.zeros_like(scores)
    parts = 0
    if method in ("z-norm", "s-norm"):
        mu, sd = stats(enroll)
        out += (scores - mu) / sd
        parts += 1
    if method in ("t-norm", "s-norm"):
        mu, sd = stats(test)
        out += (scores - mu) / sd
        parts += 1
    return out / parts


# --- verification metrics ----------------------------------------------------------------------


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


def load_cohort(encoder, cohort: Sequence[str] | str | np.ndarray) -> np.ndarray:
    """Cohort embeddings from an (M, D) array, a `.npy` file, or audio files."""
    from pathlib import Path

    if isinstance(cohort, np.ndarray):
        return np.atleast_2d(cohort)
    items = [cohort] if isinstance(cohort, (str, Path)) else list(cohort)
    if len(items) == 1 and str(items[0]).endswith(".npy"):
        return np.atleast_2d(np.load(items[0]))
    return encoder.embed(items)


def verify(
    encoder, a, b, threshold: float | None = None, cohort=None, top_k: int | None = None
) -> dict:
    """Embed two recordings and decide: {"score", "threshold", "same_speaker", "normalized"}.

    Without a cohort the score is the raw cosine (threshold default: the encoder's
    `threshold`, 0.25 for ECAPA as SpeechBrain's); with one it is the (adaptive) S-norm score
    (threshold default 2.0 standard deviations).
    """
    emb = encoder.embed([a, b])
    score = float(cosine_score(emb[0], emb[1]))
    normalized = cohort is not None
    if normalized:
        coh = load_cohort(encoder, cohort)
        score = float(
            normalize_scores(np.array([score]), emb[:1], emb[1:], coh, "s-norm", top_k)[0]
        )
    raw_thr = getattr(encoder, "threshold", DEFAULT_THRESHOLD)
    thr = threshold if threshold is not None else (2.0 if normalized else raw_thr)
    return {
        "score": score,
        "threshold": thr,
        "same_speaker": bool(score > thr),
        "normalized": normalized,
    }
