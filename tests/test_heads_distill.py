"""Soft-label distillation: the student loss against float64 numpy, top-k + rest mass, soft
labels resumed after a kill equal an uninterrupted run, the QA gate stops both entry points,
and `mas distill train` trains through the heads' loop."""

from __future__ import annotations

import json

import mlx.core as mx
import numpy as np
import pytest
from _heads_helpers import heads_manifest, pass_qa, tiny_whisper_dir

from mlx_audio_stack.cli import main
from mlx_audio_stack.data import QAGateError
from mlx_audio_stack.heads import distill as D
from mlx_audio_stack.heads import features as F
from mlx_audio_stack.heads import train as T
from mlx_audio_stack.heads.model import HeadsArgs, TaskSpec, WhisperHeads

TASKS = ["speaker_count", "gender"]
CFG = dict(batch_size=8, lr=1e-2, max_epochs=3, patience=100, hidden=16, warmup_steps=2)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("distill")
    manifest = heads_manifest(tmp, n_speakers=8, per_speaker=3)
    wdir = tiny_whisper_dir(tmp / "whisper-rand")
    feats = tmp / "feats"
    F.cache_features(manifest, wdir, feats, shard_size=8)
    pass_qa(manifest, TASKS)
    teacher = tmp / "teacher"
    T.train_heads(manifest, TASKS, wdir, teacher, features=feats, cfg=T.TrainConfig(**CFG),
                  report=False)  # fmt: skip
    return tmp, manifest, wdir, feats, teacher


def test_topk_rest_mass_reconstructs():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((6, 9)) * 3
    z = logits / 2.0
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    idx, top, rest = D.soft_targets(logits, 2.0, 9)  # k = K: exact
    np.testing.assert_allclose(D.dense_probs(idx, top, rest, 9), p, rtol=1e-6, atol=1e-7)
    idx, top, rest = D.soft_targets(logits, 2.0, 3)
    np.testing.assert_array_equal(idx, np.argsort(-p, -1)[:, :3])
    np.testing.assert_allclose(top.sum(-1) + rest, 1.0, atol=1e-6)
    d = D.dense_probs(idx, top, rest, 9)
    np.testing.assert_allclose(d.sum(-1), 1.0, atol=1e-6)
    np.testing.assert_allclose(np.take_along_axis(d, idx, -1), top, rtol=1e-6)
    others = np.ones_like(d, bool)
    np.put_along_axis(others, idx.astype(np.int64), False, -1)
    np.testing.assert_allclose(d[others].reshape(6, 6), np.repeat(rest[:, None] / 6, 6, 1),
                               rtol=1e-5)  # fmt: skip


def test_distill_loss_matches_float64_numpy():
    specs = [TaskSpec.from_taxonomy(t) for t in TASKS]
    args = HeadsArgs(3, 8, 6, 5, specs)
    mx.random.seed(1)
    model = WhisperHeads(args)
    rng = np.random.default_rng(1)
    b, t = 5, 7
    x = rng.standard_normal((b, 3, t, 8)).astype(np.float32)
    mask = np.ones((b, t), bool)
    mask[0, 5:] = False
    batch = {"x": x, "mask": mask}
    for s in specs:
        k = len(s.classes)
        batch[f"y_{s.name}"] = rng.integers(0, k, b).astype(np.int32)
        batch[f"has_{s.name}"] = np.array([1, 1, 0, 1, 1], bool)
        sp = rng.dirichlet(np.ones(k), b).astype(np.float32)
        batch[f"soft_{s.name}"] = sp
        batch[f"hassoft_{s.name}"] = np.array([1, 0, 1, 1, 1], bool)
    cfg = T.TrainConfig(task_weights={"gender": 0.5})
    alpha, temp = 0.8, 2.0
    total, parts = D.distill_loss(args, cfg, alpha, temp)(
        model, {k: mx.array(v) for k, v in batch.items()}
    )
    logits = model(mx.array(x), mx.array(mask))
    want_total = 0.0
    for s in specs:
        z = np.array(logits[s.name]["logits"], np.float64)
        y, has = batch[f"y_{s.name}"], batch[f"has_{s.name}"]
        logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
        ce = -(logp[np.arange(b), y] * has).sum() / has.sum()
        zt = z / temp
        logq = zt - np.log(np.exp(zt).sum(-1, keepdims=True))
        pt = batch[f"soft_{s.name}"].astype(np.float64)
        hs = batch[f"hassoft_{s.name}"]
        kl = ((pt * (np.log(pt) - logq)).sum(-1) * hs).sum() / hs.sum()
        want = alpha * ce + (1 - alpha) * temp**2 * kl
        np.testing.assert_allclose(parts[s.name].item(), want, rtol=1e-5)
        want_total += cfg.task_weights.get(s.name, 1.0) * want
    np.testing.assert_allclose(total.item(), want_total, rtol=1e-5)
    # alpha = 1 is the hard-label loss exactly
    hard, _ = T.hard_label_loss(args, cfg)(model, {k: mx.array(v) for k, v in batch.items()})
    one, _ = D.distill_loss(args, cfg, 1.0, temp)(model, {k: mx.array(v) for k, v in batch.items()})
    assert one.item() == pytest.approx(hard.item(), rel=1e-6)


def _read_shards(out):
    return {p.name: p.read_bytes() for p in sorted(out.glob("shard-*.safetensors"))}


def test_labels_resume_equals_uninterrupted_and_provenance(tmp_path, data, monkeypatch):
    _, manifest, wdir, feats, teacher = data
    a = tmp_path / "a"
    ix = D.distill_labels(teacher, manifest, a, temperature=2.0, top_k=1, features=feats,
                          shard_size=5)  # fmt: skip
    assert ix["top_k"] == 1 and ix["temperature"] == 2.0 and len(ix["shards"]) == 5
    for k in ("manifest_sha256", "teacher_sha256", "encoder_sha256"):
        assert len(ix[k]) == 64
    index, soft = D.load_soft_labels(a)
    assert len(soft) == 24 and soft["s0_0"]["gender"].shape == (2,)
    # the teacher's own probabilities at T, from the features without the cache
    from mlx_audio_stack.heads import load_heads

    tm = load_heads(teacher)
    f = F.open_cache(feats).load_all()["s0_0"]
    z = np.array(tm(mx.array(f.astype(np.float32))[None])["gender"]["logits"][0], np.float64)
    p = np.exp(z / 2 - np.max(z / 2))
    np.testing.assert_allclose(soft["s0_0"]["gender"], p / p.sum(), rtol=1e-5)

    # killed after 2 shards, resumed: the finished shards are not made again, same bytes
    b = tmp_path / "b"
    real, calls = D._teacher_logits, {"n": 0}

    def dying(*args):
        calls["n"] += 1
        if calls["n"] == 11:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(D, "_teacher_logits", dying)
    with pytest.raises(KeyboardInterrupt):
        D.distill_labels(teacher, manifest, b, top_k=1, features=feats, shard_size=5)
    assert len(_read_shards(b)) == 2 and not (b / "index.json").exists()
    monkeypatch.setattr(D, "_teacher_logits", real)
    calls["n"] = 0
    counted = {"n": 0}

    def counting(*args):
        counted["n"] += 1
        return real(*args)

    monkeypatch.setattr(D, "_teacher_logits", counting)
    D.distill_labels(teacher, manifest, b, top_k=1, features=feats, shard_size=5)
    assert counted["n"] == 24 - 10
    assert _read_shards(a) == _read_shards(b)
    # other settings into the same folder are refused
    with pytest.raises(D.DistillError, match="temperature"):
        D.distill_labels(teacher, manifest, b, temperature=1.0, top_k=1, features=feats,
                         shard_size=5)  # fmt: skip
    # encoding the audio (no cache) gives the same labels as the float16 cache, nearly
    c = tmp_path / "c"
    D.distill_labels(teacher, manifest, c, top_k=1, model=wdir, shard_size=5)
    _, soft_c = D.load_soft_labels(c)
    for rid in soft:
        np.testing.assert_allclose(soft_c[rid]["gender"], soft[rid]["gender"], atol=2e-3)


def test_gate_stops_labels_and_train(tmp_path, data):
    _, manifest, wdir, feats, teacher = data
    fresh = tmp_path / "copy.jsonl"  # same bytes elsewhere: never checked there
    fresh.write_bytes(manifest.read_bytes())
    (tmp_path / "audio").symlink_to(manifest.parent / "audio")
    with pytest.raises(QAGateError, match="unchecked"):
        D.distill_labels(teacher, fresh, tmp_path / "s", features=feats)
    assert not (tmp_path / "s").exists()
    assert main(["distill", "labels", "--teacher", str(teacher), "--manifest", str(fresh),
                 "--out", str(tmp_path / "s2"), "-q"]) == 1  # fmt: skip
    # soft labels of a checked manifest, then the manifest is edited (one byte): train refused
    pass_qa(fresh, ["gender", "speaker_count"])
    D.distill_labels(teacher, fresh, tmp_path / "s3", features=None, model=wdir)
    b = bytearray(fresh.read_bytes())
    b[b.index(b'"duration": ') + 12] ^= 1
    fresh.write_bytes(bytes(b))
    with pytest.raises(QAGateError, match="stale"):
        D.distill_train(tmp_path / "s3", wdir, tmp_path / "st")
    assert not (tmp_path / "st.work").exists()


def test_distill_train_cli_end_to_end(tmp_path, data, capsys):
    _, manifest, wdir, feats, teacher = data
    soft = tmp_path / "soft"
    assert main(["distill", "labels", "--teacher", str(teacher), "--manifest", str(manifest),
                 "--features", str(feats), "--out", str(soft), "-q"]) == 0  # fmt: skip
    assert "T 2.0, top-5" in capsys.readouterr().out
    _, labels = D.load_soft_labels(soft)  # k = min(5, K): speaker count (4) and gender (2) exact
    assert labels["s0_0"]["speaker_count"].shape == (4,)
    student = tmp_path / "student"

    def argv(out, *more):
        return ["distill", "train", "--soft", str(soft), "--model", str(wdir), "--features",
                str(feats), "--out", str(out), "--epochs", "2", "--hidden", "8",
                "--batch-size", "8", "-q", *more]  # fmt: skip

    assert main(argv(student)) == 0
    cfg = json.loads((student / "config.json").read_text())
    d = cfg["distillation"]
    assert d["alpha"] == 0.8 and d["temperature"] == 2.0 and len(d["teacher_sha256"]) == 64
    assert sorted(cfg["qa"]) == sorted(TASKS)
    # alpha = 1 trains on hard labels only: other weights than the distilled run
    hard = tmp_path / "hard"
    assert main(argv(hard, "--alpha", "1.0")) == 0
    from mlx.utils import tree_flatten

    from mlx_audio_stack.heads import load_heads

    wa = dict(tree_flatten(load_heads(student).parameters()))
    wb = dict(tree_flatten(load_heads(hard).parameters()))
    assert any(not np.allclose(np.array(wa[k]), np.array(wb[k])) for k in wa)


def test_labels_only_for_the_tasks_the_manifest_labels(tmp_path, data):
    _, manifest, wdir, _, teacher = data
    (tmp_path / "audio").symlink_to(manifest.parent / "audio")
    recs = [json.loads(x) for x in manifest.read_text().splitlines()]
    g = tmp_path / "gender.jsonl"
    g.write_text("".join(json.dumps({**{k: v for k, v in r.items() if k != "extra"},
                                     "labels": {"gender": r["labels"]["gender"]}}) + "\n"
                         for r in recs))  # fmt: skip
    pass_qa(g, ["gender"])  # never checked for speaker_count: that task is not asked of it
    ix = D.distill_labels(teacher, g, tmp_path / "s", model=wdir, shard_size=100)
    assert list(ix["tasks"]) == ["gender"] and list(ix["qa"]) == ["gender"]


def _transfer_manifest(path, manifest, wrong: bool):
    """The train records of `manifest` again under new ids (split train); with `wrong`,
    every label and frame label changed (gender swapped, speaker count k -> k % 3 + 1, with
    speakers and overlap to match, as the QA suite checks)."""
    from mlx_audio_stack.data.manifest import write_manifest

    recs = []
    for line in manifest.read_text().splitlines():
        r = json.loads(line)
        if r["split"] != "train":
            continue
        r = {**r, "id": "t_" + r["id"]}
        if wrong:
            k = int(r["labels"]["speaker_count"]) % 3 + 1
            g = "female" if r["labels"]["gender"] == "male" else "male"
            r["labels"] = {"gender": g, "speaker_count": str(k)}
            r["extra"] = {**r["extra"], "frame_labels": str(k) * len(r["extra"]["frame_labels"])}
            r["speakers"] = [r["speaker"]] + [f"{r['speaker']}-{j}" for j in range(1, k)]
            r["overlap"] = 0.0 if k == 1 else round(r["duration"], 2)  # QA: fits the label
        recs.append(r)
    return write_manifest(recs, path)


def test_transfer_set_trains_on_teacher_labels_alone(tmp_path, data):
    """`distill_train(transfer=...)`: the transfer records enter training (other weights than
    without them) through the teacher's soft labels only: their own labels, right or wrong,
    give the same weights."""
    from mlx.utils import tree_flatten

    from mlx_audio_stack.heads import load_heads

    _, manifest, wdir, feats, teacher = data
    soft = tmp_path / "soft"
    D.distill_labels(teacher, manifest, soft, features=feats)
    cfg = T.TrainConfig(**CFG)
    weights = {}
    for name, wrong in (("right", False), ("wrong", True)):
        d = tmp_path / name
        d.mkdir()
        (d / "audio").symlink_to(manifest.parent / "audio")
        tm = _transfer_manifest(d / "transfer.jsonl", manifest, wrong)
        pass_qa(tm, TASKS)
        tf = d / "feats"
        F.cache_features(tm, wdir, tf, shard_size=8)
        D.distill_labels(teacher, tm, d / "soft", features=tf)
        D.distill_train(soft, wdir, d / "student", features=feats, cfg=cfg, transfer=d / "soft",
                        transfer_features=tf)  # fmt: skip
        weights[name] = dict(tree_flatten(load_heads(d / "student").parameters()))
        c = json.loads((d / "student" / "config.json").read_text())
        assert c["training"]["labels_withheld"] == [str(tm.resolve())]
        assert c["distillation"]["transfer"]["n_records"] == 12
    D.distill_train(soft, wdir, tmp_path / "alone", features=feats, cfg=cfg)
    alone = dict(tree_flatten(load_heads(tmp_path / "alone").parameters()))
    for k in weights["right"]:
        np.testing.assert_array_equal(np.array(weights["right"][k]), np.array(weights["wrong"][k]))
    assert any(not np.allclose(np.array(alone[k]), np.array(weights["right"][k])) for k in alone)
    # the soft labels of the manifest itself as a transfer set: same ids, refused
    with pytest.raises(D.DistillError, match="own ids"):
        D.distill_train(soft, wdir, tmp_path / "x", features=feats, cfg=cfg, transfer=soft,
                        transfer_features=feats)  # fmt: skip
