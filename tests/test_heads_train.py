"""Training the heads: the QA gate stops it (unchecked, failed, one byte edited) unless
overridden loudly; it learns; a killed run resumed ends with the same weights; the report."""

from __future__ import annotations

import json
import logging

import mlx.core as mx
import numpy as np
import pytest
from _heads_helpers import SMALL_QA, heads_manifest, pass_qa, tiny_whisper_dir
from mlx.utils import tree_flatten

from mlx_audio_stack.cli import main
from mlx_audio_stack.data import QAGateError, run_qa
from mlx_audio_stack.heads import features as F
from mlx_audio_stack.heads import load_heads
from mlx_audio_stack.heads import train as T

TASKS = ["speaker_count", "gender"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("heads")
    manifest = heads_manifest(tmp, n_speakers=12, per_speaker=4)
    wdir = tiny_whisper_dir(tmp / "whisper-rand")
    feats = tmp / "feats"
    F.cache_features(manifest, wdir, feats, shard_size=16)
    pass_qa(manifest, TASKS)
    return tmp, manifest, wdir, feats


CFG = dict(batch_size=8, lr=1e-2, max_epochs=8, patience=100, hidden=16, warmup_steps=3)


def _weights(path):
    return {k: np.array(v) for k, v in tree_flatten(load_heads(path).parameters())}


def test_gate_stops_unchecked_failed_and_edited(tmp_path, data):
    _, manifest, wdir, feats = data
    fresh = heads_manifest(tmp_path / "u", n_speakers=6, per_speaker=2)
    with pytest.raises(QAGateError, match="unchecked"):
        T.train_heads(fresh, TASKS, wdir, tmp_path / "o1", features=feats)
    assert main(["train", "heads", "--manifest", str(fresh), "--tasks", "gender", "--model",
                 str(wdir), "--out", str(tmp_path / "o2"), "-q"]) == 1  # fmt: skip
    # failed: a label outside the taxonomy
    (tmp_path / "audio").symlink_to(manifest.parent / "audio")
    recs = [json.loads(x) for x in manifest.read_text().splitlines()]
    recs[0]["labels"]["gender"] = "robot"
    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join(json.dumps(r) + "\n" for r in recs))
    r = run_qa(bad, "gender", progress=False, profile_overrides=SMALL_QA, plots=False)
    assert "labels.taxonomy" in {f.check for f in r.findings if f.severity == "error"}
    with pytest.raises(QAGateError, match="failed"):
        T.train_heads(bad, ["gender"], wdir, tmp_path / "o3")
    # passed, then one byte edited: refused
    edited = tmp_path / "edited.jsonl"
    edited.write_bytes(manifest.read_bytes())
    pass_qa(edited, ["gender"])
    b = bytearray(edited.read_bytes())
    b[b.index(b'"duration": ') + 12] ^= 1  # one digit of one duration
    edited.write_bytes(bytes(b))
    with pytest.raises(QAGateError, match="stale"):
        T.train_heads(edited, ["gender"], wdir, tmp_path / "o4")
    assert not (tmp_path / "o4.work").exists()  # stopped before computing anything


def test_skip_qa_is_loud_and_recorded(tmp_path, data, caplog):
    _, manifest, wdir, feats = data
    fresh = tmp_path / "copy.jsonl"  # same bytes elsewhere: never checked there
    fresh.write_bytes(manifest.read_bytes())
    (tmp_path / "audio").symlink_to(manifest.parent / "audio")
    with caplog.at_level(logging.WARNING):
        cfg = T.TrainConfig(**{**CFG, "max_epochs": 1})
        T.train_heads(fresh, ["gender"], wdir, tmp_path / "o", features=feats, cfg=cfg,
                      skip_qa="smoke test")  # fmt: skip
    assert "OVERRIDDEN" in caplog.text and "QA GATE SKIPPED" in caplog.text
    cfg = json.loads((tmp_path / "o" / "config.json").read_text())
    assert cfg["qa"]["gender"]["override"]["reason"] == "smoke test"


def test_learns_reports_and_resume_gives_same_weights(tmp_path, data, monkeypatch):
    _, manifest, wdir, feats = data
    cfg = T.TrainConfig(**CFG)
    s = T.train_heads(manifest, TASKS, wdir, tmp_path / "a", features=feats, cfg=cfg)
    assert len(s["history"]) == 8 and s["history"][-1]["train_loss"] < s["history"][0]["train_loss"]
    # pitch band -> gender is easy even for a random encoder: held-out speakers
    assert s["metrics"]["test"]["gender"]["accuracy"] >= 0.75, s["metrics"]["test"]
    sc = s["metrics"]["valid"]["speaker_count"]
    assert np.array(sc["confusion"]).sum() == sc["n"] and "frame" in sc
    out = tmp_path / "a"
    for f in ("report.md", "metrics.json", "config.json", "model.safetensors"):
        assert (out / f).is_file(), f
    assert "speaker_count" in (out / "report.md").read_text()
    pytest.importorskip("matplotlib")
    assert (out / "learning_curve.png").is_file() and (out / "confusion_gender.png").is_file()

    # killed during epoch 3 (after 2 checkpoints), then resumed
    real, calls = T.evaluate, {"n": 0}

    def dying(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(T, "evaluate", dying)
    with pytest.raises(KeyboardInterrupt):
        T.train_heads(manifest, TASKS, wdir, tmp_path / "b", features=feats, cfg=cfg)
    assert not (tmp_path / "b").exists()
    state = json.loads((tmp_path / "b.work" / "checkpoint" / "state.json").read_text())
    assert state["epoch"] == 2
    monkeypatch.setattr(T, "evaluate", real)
    s2 = T.train_heads(manifest, TASKS, wdir, tmp_path / "b", features=feats, cfg=cfg)
    assert s2["resumed_from"] == 2
    wa, wb = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert sorted(wa) == sorted(wb)
    for k in wa:
        np.testing.assert_array_equal(wa[k], wb[k], err_msg=k)
    # another seed gives other weights (the comparison above can fail)
    s3 = T.train_heads(manifest, TASKS, wdir, tmp_path / "c", features=feats,
                       cfg=T.TrainConfig(**{**CFG, "seed": 1}))  # fmt: skip
    assert s3["history"] != s["history"]


def test_balanced_sampler_equal_task_shares(data):
    from mlx_audio_stack.heads.dataset import balanced_batches, build_examples
    from mlx_audio_stack.heads.model import HeadsArgs, TaskSpec

    _, manifest, _, feats = data
    from mlx_audio_stack.data.manifest import read_manifest

    recs = read_manifest(manifest).records
    for r in recs[::2]:
        del r["labels"]["gender"]  # gender now on half the records
    args = HeadsArgs(3, 32, 16, 5, [TaskSpec.from_taxonomy(t) for t in TASKS])
    ex = [e for e in build_examples(recs, F.open_cache(feats).load_all(), args)
          if e.split == "train"]  # fmt: skip
    b1 = balanced_batches(ex, args, 8, 0, 0)
    assert b1 == balanced_batches(ex, args, 8, 0, 0) != balanced_batches(ex, args, 8, 0, 1)
    for b in b1:
        assert sum(ex[i].labels["gender"] >= 0 for i in b[4:]) == 4  # the gender share
    assert mx.array(0).item() == 0


def test_two_manifests_each_gated_for_its_task_cli(tmp_path, data, capsys, monkeypatch):
    _, manifest, wdir, _ = data

    def fake_layers(model, audio, pool):  # this test is about the gate and the plumbing
        n = int(np.ceil(np.ceil(audio.size / 320) / pool))
        return np.random.default_rng(audio.size).standard_normal((3, n, 32)).astype(np.float32)

    monkeypatch.setattr(F, "encode_layers", fake_layers)
    (tmp_path / "audio").symlink_to(manifest.parent / "audio")
    recs = [json.loads(x) for x in manifest.read_text().splitlines()]
    paths = {}
    for task in TASKS:
        rs = [{**r, "labels": {task: r["labels"][task]}} for r in recs]
        if task == "gender":
            rs = [{k: v for k, v in r.items() if k != "extra"} for r in rs]
        paths[task] = tmp_path / f"{task}.jsonl"
        paths[task].write_text("".join(json.dumps(r) + "\n" for r in rs))
    pass_qa(paths["gender"], ["gender"])
    argv = ["train", "heads", "--manifest", str(paths["gender"]), "--manifest",
            str(paths["speaker_count"]), "--tasks", ",".join(TASKS), "--model", str(wdir),
            "--out", str(tmp_path / "h"), "--epochs", "1", "--hidden", "8", "-q"]  # fmt: skip
    assert main(argv) == 1  # the speaker-count manifest was never checked
    assert "speaker_count" in capsys.readouterr().err
    pass_qa(paths["speaker_count"], ["speaker_count"])
    assert main(argv) == 0
    cfg = json.loads((tmp_path / "h" / "config.json").read_text())
    assert sorted(cfg["qa"]) == ["gender:gender", "speaker_count:speaker_count"]
    assert "test gender" in capsys.readouterr().out
