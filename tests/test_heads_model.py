"""The Whisper heads model: the encoder's per-layer outputs, time pooling, masking, save/load,
and its cost against the encoder's (< 2 %)."""

from __future__ import annotations

import json

import mlx.core as mx
import numpy as np
import pytest

from mlx_audio_stack.errors import WeightsError
from mlx_audio_stack.heads import (
    HeadsArgs,
    TaskSpec,
    WhisperHeads,
    encoder_flops,
    heads_flops,
    load_heads,
    pool_time,
    save_heads,
)
from mlx_audio_stack.models.whisper import OFFICIAL_DIMS, ModelDimensions, Whisper

ALL = ("emotion", "paralinguistic", "speaker_count", "gender", "speaking_rate")


def tiny_whisper(seed: int = 0) -> Whisper:
    mx.random.seed(seed)
    dims = ModelDimensions(80, 1500, 32, 2, 3, 100, 16, 32, 2, 1)
    m = Whisper(dims)
    mx.eval(m.parameters())
    return m


def tiny_heads(tasks=("speaker_count", "gender"), seed: int = 0) -> WhisperHeads:
    mx.random.seed(seed)
    args = HeadsArgs(3, 32, hidden=16, pool=5, tasks=[TaskSpec.from_taxonomy(t) for t in tasks])
    m = WhisperHeads(args)
    mx.eval(m.parameters())
    return m


def test_encoder_returns_every_block_output_and_same_final():
    w = tiny_whisper()
    mel = mx.random.normal((1, 200, 80))
    out = w.encoder(mel)
    out2, layers = w.encoder(mel, return_layers=True)
    assert len(layers) == 3 and layers[0].shape == (1, 100, 32)
    np.testing.assert_array_equal(np.array(out), np.array(out2))
    np.testing.assert_allclose(np.array(w.encoder.ln_post(layers[-1])), np.array(out), atol=1e-5)
    # layer i is block i applied to layer i - 1
    again, _ = w.encoder.blocks[1](layers[0])
    np.testing.assert_allclose(np.array(again), np.array(layers[1]), atol=1e-4)


def test_pool_time_means_and_partial_last_group():
    x = mx.arange(2 * 12 * 3, dtype=mx.float32).reshape(2, 12, 3)
    p = np.array(pool_time(x, 5, n_valid=11))  # groups 0-4, 5-9, 10
    xn = np.array(x)
    assert p.shape == (2, 3, 3)
    np.testing.assert_allclose(p[:, 0], xn[:, 0:5].mean(1))
    np.testing.assert_allclose(p[:, 2], xn[:, 10])
    assert np.array(pool_time(x, 4)).shape == (2, 3, 3)


def test_forward_shapes_masking_and_probabilities():
    h = tiny_heads(ALL)
    x = mx.random.normal((2, 3, 7, 32))
    out = h(x)
    assert out["speaker_count"]["logits"].shape == (2, 4)
    assert out["speaker_count"]["frame_logits"].shape == (2, 7, 4)
    assert "frame_logits" not in out["gender"]
    assert out["paralinguistic"]["logits"].shape == (2, 53)
    # frames masked out do not change the segment output
    mask = mx.array([[True] * 5 + [False] * 2] * 2)
    a = h(x, mask)["emotion"]["logits"]
    b = h(x[:, :, :5], None)["emotion"]["logits"]
    np.testing.assert_allclose(np.array(a), np.array(b), atol=1e-5)
    p = h.predict(x)
    np.testing.assert_allclose(np.array(p["emotion"]["probs"].sum(-1)), 1.0, atol=1e-5)
    pl = np.array(p["paralinguistic"]["probs"])  # sigmoid: independent, not summing to 1
    assert pl.min() > 0 and pl.max() < 1 and abs(pl.sum(-1)[0] - 1) > 0.5
    with pytest.raises(WeightsError, match="another Whisper size"):
        h(mx.zeros((1, 4, 7, 32)))


def test_save_load_roundtrip_strict(tmp_path):
    h = tiny_heads()
    x = mx.random.normal((1, 3, 6, 32))
    save_heads(h, tmp_path / "heads", {"encoder": {"name": "tiny"}})
    cfg = json.loads((tmp_path / "heads" / "config.json").read_text())
    assert cfg["model_type"] == "whisper_heads" and cfg["encoder"] == {"name": "tiny"}
    assert [t["name"] for t in cfg["args"]["tasks"]] == ["speaker_count", "gender"]
    g = load_heads(tmp_path / "heads")
    for t in ("speaker_count", "gender"):
        np.testing.assert_allclose(
            np.array(g(x)[t]["logits"]), np.array(h(x)[t]["logits"]), atol=1e-6
        )
    cfg["args"]["hidden"] = 8  # config and weights disagree: refused, naming the key
    (tmp_path / "heads" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(WeightsError, match="shape"):
        load_heads(tmp_path / "heads")
    with pytest.raises(WeightsError, match="not a converted weights folder"):
        load_heads(tmp_path / "nothing")


def test_cost_under_two_percent_of_the_encoder():
    tasks = [TaskSpec.from_taxonomy(t) for t in ALL]
    for name in ("tiny", "base", "small", "large-v3"):
        d = OFFICIAL_DIMS[name]
        enc = encoder_flops(d.n_mels, d.n_audio_state, d.n_audio_layer)
        hd = heads_flops(HeadsArgs(d.n_audio_layer, d.n_audio_state, tasks=tasks))
        assert hd / enc < 0.02, (name, hd / enc)
    d = OFFICIAL_DIMS["base"]
    enc = encoder_flops(d.n_mels, d.n_audio_state, d.n_audio_layer)
    assert abs(enc / 1e9 - 87.4) < 0.1  # the figure in heads/model.py's docstring
