"""Heads metrics against scikit-learn, and frame labels mapped onto the heads' frames."""

from __future__ import annotations

import numpy as np
import pytest

from mlx_audio_stack.heads.dataset import _frame_labels
from mlx_audio_stack.heads.metrics import (
    average_precision,
    classification_metrics,
    mean_average_precision,
)


def test_against_sklearn():
    metrics = pytest.importorskip("sklearn.metrics", reason="scikit-learn (reference) missing")
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 200)
    p = rng.dirichlet(np.ones(4), 200)
    p[np.arange(200), y] += rng.uniform(0, 0.6, 200)  # better than chance
    m = classification_metrics(y, p)
    pred = p.argmax(-1)
    assert m["accuracy"] == pytest.approx(metrics.accuracy_score(y, pred))
    assert m["macro_f1"] == pytest.approx(metrics.f1_score(y, pred, average="macro"))
    assert m["confusion"] == metrics.confusion_matrix(y, pred, labels=range(4)).tolist()
    truth = rng.random((100, 6)) < 0.3
    scores = truth * rng.uniform(0, 0.7, (100, 6)) + rng.random((100, 6)) * 0.5
    for j in range(6):
        assert average_precision(scores[:, j], truth[:, j]) == pytest.approx(
            metrics.average_precision_score(truth[:, j], scores[:, j])
        )
    assert mean_average_precision(scores, truth) == pytest.approx(
        metrics.average_precision_score(truth, scores, average="macro")
    )


def test_frame_labels_onto_coarser_and_equal_frames():
    rec = {"extra": {"frame_seconds": 0.1, "frame_labels": "0122333"}}
    np.testing.assert_array_equal(_frame_labels(rec, 7, 0.1), [0, 1, 2, 2, 3, 3, 3])
    # 0.2 s head frames take the label frame their centre falls in; past the end: -1
    np.testing.assert_array_equal(_frame_labels(rec, 5, 0.2), [1, 2, 3, -1, -1])
    assert _frame_labels({"extra": {}}, 5, 0.1) is None
