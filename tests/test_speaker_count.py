"""Speaker counter / overlap detector: smoke test, streaming == whole file, the shipped
weights (strict loading, behaviour on real held-out speech, provenance)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest

import mlx_audio_stack as mas
from mlx_audio_stack.errors import AudioError, WeightsError
from mlx_audio_stack.evaluation.count_mixtures import TEST_SPEAKERS, VALID_SPEAKERS
from mlx_audio_stack.models.speaker_count import (
    ModelArgs,
    SpeakerCountDetector,
    SpeakerCounter,
    load_speaker_counter,
    save_speaker_counter,
)
from mlx_audio_stack.models.speaker_count.load import SHIPPED_DIR
from mlx_audio_stack.paths import REPO_ROOT

TINY = ModelArgs(n_mels=16, hidden=16, dilations=(1, 2), lookahead=2)


@pytest.fixture(scope="module")
def tiny() -> SpeakerCountDetector:
    mx.random.seed(0)
    model = SpeakerCounter(TINY)
    model.eval()
    mx.eval(model.parameters())
    return SpeakerCountDetector(model)


@pytest.fixture(scope="module")
def shipped() -> SpeakerCountDetector:
    return load_speaker_counter()


def test_tiny_forward_shapes(tiny):
    rng = np.random.default_rng(0)
    x = (0.1 * rng.standard_normal(16000 * 2 + 123)).astype(np.float32)
    p = tiny.count(x)
    assert p.shape == (21, 4)  # ceil(32123 / 1600) frames of 0.1 s
    np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-5)
    assert tiny.count(np.zeros(0, np.float32)).shape == (0, 4)
    flags = tiny.overlap(p)
    np.testing.assert_array_equal(flags, p[:, 2] + p[:, 3] >= tiny.overlap_threshold)
    assert tiny.rf == 1 + 2 * 3 and tiny.lead == tiny.rf - 1 - TINY.lookahead


@pytest.mark.parametrize("n", [1, 1599, 1600, 1601, 16000 * 3 + 77])
def test_streaming_equals_offline(tiny, n):
    rng = np.random.default_rng(n)
    x = (0.1 * rng.standard_normal(n)).astype(np.float32)
    offline = tiny.count(x)
    state, outs, pos = tiny.init_state(), [], 0
    while pos < n:
        k = int(rng.integers(1, 3000))  # chunks shorter and longer than a frame / token
        state, p = tiny.step(state, x[pos : pos + k])
        outs.append(p)
        pos += k
    state, p = tiny.flush(state)
    outs.append(p)
    stream = np.concatenate(outs)
    assert stream.shape == offline.shape
    np.testing.assert_allclose(stream, offline, atol=1e-5)
    # the state is a value: an earlier state replayed gives the same frames again
    s0 = tiny.init_state()
    s1, a = tiny.step(s0, x)
    _, b = tiny.step(s0, x)
    np.testing.assert_array_equal(a, b)
    with pytest.raises(AudioError):
        tiny.step(state, x)  # after flush


def test_bad_input(tiny):
    with pytest.raises(AudioError, match="mono"):
        tiny.count(np.zeros((2, 1600), np.float32))
    with pytest.raises(AudioError, match="NaN"):
        tiny.count(np.full(1600, np.nan, np.float32))


def test_save_load_roundtrip_and_strict(tiny, tmp_path):
    out = save_speaker_counter(tiny.model, tmp_path / "sc", dtype=mx.float32)
    det = load_speaker_counter(out)
    x = np.random.default_rng(1).standard_normal(8000).astype(np.float32) * 0.1
    np.testing.assert_allclose(det.count(x), tiny.count(x), atol=1e-6)
    w = dict(mx.load(str(out / "model.safetensors")))
    w.pop("head.bias")
    w["extra.weight"] = mx.zeros((2,))
    mx.save_safetensors(str(out / "model.safetensors"), w)
    with pytest.raises(WeightsError, match="head.bias.*|extra.weight"):
        load_speaker_counter(out)


def test_shipped_weights_load_strictly(shipped):
    assert mas.load_speaker_counter is load_speaker_counter  # registered in _API
    assert shipped.frame_seconds == pytest.approx(0.1)
    assert shipped.overlap_threshold == shipped.config["overlap_threshold"]
    size = sum(p.stat().st_size for p in SHIPPED_DIR.iterdir())
    assert size < 500_000, f"shipped speaker_count assets are {size} bytes"
    bad = SHIPPED_DIR.parent.parent / "_no_such_dir"
    with pytest.raises(WeightsError):
        load_speaker_counter(bad)


def test_shipped_provenance():
    cfg = json.loads((SHIPPED_DIR / "config.json").read_text())
    assert cfg["model_type"] == "speaker_count"
    tr = cfg["training"]
    assert "tools/train_speaker_count.py" in tr["command"]
    assert isinstance(tr["seed"], int)
    assert tr["qa"]["state"] == "passed" and tr["qa"]["override"] is None
    assert tr["qa"]["task"] == "speaker_count" and len(tr["manifest_sha256"]) == 64
    assert 0.0 < cfg["overlap_threshold"] < 1.0
    assert tr["metrics"]["test_balanced_acc"] > 0.25  # above chance (4 classes)
    summ = json.loads((SHIPPED_DIR / "training_summary.json").read_text())
    assert summ["manifest_sha256"] == tr["manifest_sha256"]
    assert set(summ["splits"]) == {"train", "valid", "test"}
    assert summ["qa"]["state"] == "passed"
    # held-out speakers never in training: the listed speakers per split are disjoint
    assert summ["splits"]["train"]["speakers"] > 200
    pyproject = (REPO_ROOT / "pyproject.toml").read_text()
    line = next(x for x in pyproject.splitlines() if x.startswith("mlx_audio_stack = ["))
    assert '"assets/speaker_count/*"' in line  # package-data ships the weights


def _utt(data: Path, speaker: str) -> np.ndarray:
    from mlx_audio_stack.audio import load_audio

    sub = "test-clean" if speaker == "1089" else "dev-clean"
    path = sorted((data / "librispeech" / sub / speaker).rglob("*.flac"))[0]
    return load_audio(path)


def test_shipped_two_speakers_above_single(shipped, shared_data):
    """A real 2-talker mixture of held-out speakers (test-clean 1089, dev-clean 2412, never
    trained on) gets a higher 2-speaker probability than either talker alone."""
    assert "1089" in TEST_SPEAKERS and "2412" in TEST_SPEAKERS
    assert not {"1089", "2412"} & set(VALID_SPEAKERS)
    a, b = _utt(shared_data, "1089"), _utt(shared_data, "2412")
    n = min(a.size, b.size, 8 * 16000)
    a = a[:n] / np.sqrt(np.mean(a[:n] ** 2))
    b = b[:n] / np.sqrt(np.mean(b[:n] ** 2))
    mix = 0.05 * (a + b)
    p_mix = shipped.count(mix.astype(np.float32))[:, 2].mean()
    p_a = shipped.count((0.05 * a).astype(np.float32))[:, 2].mean()
    p_b = shipped.count((0.05 * b).astype(np.float32))[:, 2].mean()
    assert p_mix > p_a and p_mix > p_b, (p_mix, p_a, p_b)


def test_shipped_copy_is_strict(tmp_path):
    """The shipped folder loads strictly: one renamed tensor is named in the error."""
    dst = tmp_path / "sc"
    shutil.copytree(SHIPPED_DIR, dst)
    w = dict(mx.load(str(dst / "model.safetensors")))
    w["blocks.0.conv.kernel"] = w.pop("blocks.0.conv.weight")
    mx.save_safetensors(str(dst / "model.safetensors"), w)
    with pytest.raises(WeightsError, match="blocks.0.conv.weight"):
        load_speaker_counter(dst)
