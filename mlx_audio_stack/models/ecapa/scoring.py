"""Scoring speaker embeddings: cosine similarity (as SpeechBrain's `verify_batch`), cohort
score normalization (Z-, T-, S-norm and adaptive S-norm), and `mas verify`'s decision.
The verification metrics (EER, minDCF, trial lists) are in `mlx_audio_stack.evaluation`.

Everything here is numpy on (N, D) float arrays: embeddings are small, and the scores must
not depend on a framework.
"""

from __future__ import annotations

from collections.abc import Sequence

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
