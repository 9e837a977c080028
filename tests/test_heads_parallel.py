"""Data-parallel heads training and sharded soft-label generation over `mlx.launch -n 2`
(ring backend, 2 local processes): the same weights and metrics as one process with the same
global batch, and byte-identical soft labels."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest
from _heads_helpers import heads_manifest, pass_qa, tiny_whisper_dir
from mlx.utils import tree_flatten

from mlx_audio_stack.heads import distill as D
from mlx_audio_stack.heads import features as F
from mlx_audio_stack.heads import load_heads
from mlx_audio_stack.heads import train as T

REPO = Path(__file__).resolve().parents[1]
LAUNCH = Path(sys.executable).with_name("mlx.launch")
TASKS = ["speaker_count", "gender"]
CFG = dict(batch_size=8, lr=1e-2, max_epochs=4, patience=100, hidden=16, warmup_steps=2)
# float32 sums over 4 records per process instead of 8 in one: reordered additions through
# 4 epochs (16 steps) of AdamW; measured max |diff| 1.2e-6 (the one-step gradients: < 1e-6)
ATOL = 1e-5
# The attention-pooling bias has an exactly zero gradient (softmax over time is shift
# invariant), so its gradient is float noise that AdamW turns into lr-sized steps in both
# runs alike; it never changes an output, so it is compared through the outputs instead.
NOISE_ONLY = ".att.bias"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(argv: list[str], tmp: Path) -> subprocess.CompletedProcess:
    if not LAUNCH.is_file():
        pytest.skip(f"no mlx.launch beside {sys.executable}")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [str(LAUNCH), "-n", "2", "--backend", "ring", "--starting-port", str(_free_port()),
           "--", sys.executable, "-m", "mlx_audio_stack", *argv]  # fmt: skip
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    return r


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("parallel")
    manifest = heads_manifest(tmp, n_speakers=8, per_speaker=4)
    wdir = tiny_whisper_dir(tmp / "whisper-rand")
    feats = tmp / "feats"
    F.cache_features(manifest, wdir, feats, shard_size=8)
    pass_qa(manifest, TASKS)
    return tmp, manifest, wdir, feats


def test_two_processes_train_like_one(data, tmp_path):
    _, manifest, wdir, feats = data
    one = T.train_heads(manifest, TASKS, wdir, tmp_path / "one", features=feats,
                        cfg=T.TrainConfig(**CFG), report=False)  # fmt: skip
    r = _launch(["train", "heads", "--manifest", str(manifest), "--tasks", ",".join(TASKS),
                 "--model", str(wdir), "--features", str(feats), "--out", str(tmp_path / "two"),
                 "--batch-size", "8", "--lr", "1e-2", "--epochs", "4", "--patience", "100",
                 "--hidden", "16", "--warmup-steps", "2", "-q"], tmp_path)  # fmt: skip
    assert "best epoch" in r.stdout
    cfg = json.loads((tmp_path / "two" / "config.json").read_text())
    assert cfg["training"]["processes"] == 2
    w1 = dict(tree_flatten(load_heads(tmp_path / "one").parameters()))
    w2 = dict(tree_flatten(load_heads(tmp_path / "two").parameters()))
    assert sorted(w1) == sorted(w2)
    diffs = {k: float(np.abs(np.array(w1[k]) - np.array(w2[k])).max()) for k in w1}
    assert max(v for k, v in diffs.items() if not k.endswith(NOISE_ONLY)) < ATOL, diffs
    feats_all = F.open_cache(feats).load_all()
    for rid in list(feats_all)[:6]:
        x = mx.array(feats_all[rid].astype(np.float32))[None]
        p1, p2 = load_heads(tmp_path / "one").predict(x), load_heads(tmp_path / "two").predict(x)
        for task in TASKS:
            np.testing.assert_allclose(np.array(p1[task]["probs"]), np.array(p2[task]["probs"]),
                                       atol=ATOL)  # fmt: skip
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    for split in ("valid", "test"):
        for task in TASKS:
            a, b = one["metrics"][split][task], two["metrics"][split][task]
            assert a["accuracy"] == b["accuracy"] and a["confusion"] == b["confusion"]
    # every epoch's training loss (all-reduced over the 2 processes) equals one process's
    np.testing.assert_allclose([h["train_loss"] for h in two["history"]],
                               [h["train_loss"] for h in one["history"]], rtol=1e-5)  # fmt: skip


def test_two_ranks_make_the_same_soft_labels(data, tmp_path):
    tmp, manifest, wdir, feats = data
    teacher = tmp_path / "teacher"
    T.train_heads(manifest, TASKS, wdir, teacher, features=feats,
                  cfg=T.TrainConfig(**{**CFG, "max_epochs": 1}), report=False)  # fmt: skip
    D.distill_labels(teacher, manifest, tmp_path / "one", features=feats, shard_size=5)
    _launch(["distill", "labels", "--teacher", str(teacher), "--manifest", str(manifest),
             "--features", str(feats), "--shard-size", "5", "--out", str(tmp_path / "two"),
             "-q"], tmp_path)  # fmt: skip
    one = sorted((tmp_path / "one").glob("shard-*"))
    two = sorted((tmp_path / "two").glob("shard-*"))
    assert [p.name for p in one] == [p.name for p in two] and len(one) == 7
    for a, b in zip(one, two):
        assert a.read_bytes() == b.read_bytes(), a.name
    ia = json.loads((tmp_path / "one" / "index.json").read_text())
    ib = json.loads((tmp_path / "two" / "index.json").read_text())
    assert ia["shards"] == ib["shards"] and ia["teacher_sha256"] == ib["teacher_sha256"]
    # students trained on them by 2 processes and by 1 (the soft term's denominators too)
    c = T.TrainConfig(**CFG)
    D.distill_train(tmp_path / "one", wdir, tmp_path / "s1", features=feats, cfg=c)
    _launch(["distill", "train", "--soft", str(tmp_path / "two"), "--model", str(wdir),
             "--features", str(feats), "--out", str(tmp_path / "s2"), "--batch-size", "8",
             "--lr", "1e-2", "--epochs", "4", "--patience", "100", "--hidden", "16",
             "--warmup-steps", "2", "-q"], tmp_path)  # fmt: skip
    w1 = dict(tree_flatten(load_heads(tmp_path / "s1").parameters()))
    w2 = dict(tree_flatten(load_heads(tmp_path / "s2").parameters()))
    diffs = {k: float(np.abs(np.array(w1[k]) - np.array(w2[k])).max()) for k in w1}
    assert max(v for k, v in diffs.items() if not k.endswith(NOISE_ONLY)) < ATOL, diffs
