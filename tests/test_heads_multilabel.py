"""Emotion (multi-class) and paralinguistic events (multi-label) through the whole heads path
on a small generated manifest: RAVDESS names through the adapter, QA gate, training, mAP."""

from __future__ import annotations

import json

import numpy as np
from _heads_helpers import tiny_whisper_dir
from test_qa_support import make_wav

from mlx_audio_stack.data import run_qa
from mlx_audio_stack.data.adapters.emotion import build_ravdess
from mlx_audio_stack.data.manifest import write_manifest
from mlx_audio_stack.heads import features as F
from mlx_audio_stack.heads import load_heads
from mlx_audio_stack.heads import train as T

EMO = ("angry", "happy", "sad")
EVENTS = (["laughter"], ["cough", "speech"], ["speech"])


def test_ravdess_calm_and_disgust_map_to_emotion2vec_classes(tmp_path):
    for actor in (1, 2):
        for emo in ("02", "07"):
            make_wav(tmp_path / f"03-01-{emo}-01-01-01-{actor:02d}.wav", seed=actor)
    recs = {r["id"]: r for r in build_ravdess(tmp_path, split="train")}
    calm = recs["ravdess-03-01-02-01-01-01-01"]
    assert calm["labels"]["emotion"] == "neutral" and calm["extra"]["corpus_emotion"] == "calm"
    assert recs["ravdess-03-01-07-01-01-01-02"]["labels"]["emotion"] == "disgusted"


def test_emotion_and_events_train_with_map(tmp_path, monkeypatch):
    recs = []
    for s in range(12):
        split = "test" if s >= 10 else "valid" if s >= 8 else "train"
        for i in range(6):
            k = (s + i) % 3
            wav = make_wav(tmp_path / "a" / f"s{s}_{i}.wav", dur=0.6, seed=10 * s + i)
            recs.append({
                "id": f"s{s}_{i}", "audio": str(wav), "duration": 0.6, "sample_rate": 16000,
                "channels": 1, "speaker": f"spk{s}", "split": split, "dataset": "synthetic",
                "license": "CC0-1.0",
                "labels": {"emotion": EMO[k], "paralinguistic": EVENTS[k][0]},
                "extra": {"events": EVENTS[k], "k": k},
            })  # fmt: skip
    manifest = write_manifest(recs, tmp_path / "emo.jsonl")
    for task in ("emotion", "paralinguistic"):
        r = run_qa(manifest, task, progress=False, plots=False,
                   profile_overrides={"min_class_count": 3, "max_majority": 0.8})  # fmt: skip
        assert r.passed, [f.line() for f in r.findings if f.severity == "error"][:3]

    def fake_layers(model, audio, pool):  # class-dependent features: the heads can learn
        n = int(np.ceil(np.ceil(audio.size / 320) / pool))
        k = int(np.round(np.abs(audio[:50]).sum() * 1000)) % 7  # any per-file value
        return np.random.default_rng(k).standard_normal((3, n, 32)).astype(np.float32)

    real_audio = F._record_audio

    def tagged_audio(m, rec):  # record the class in the audio's first sample for fake_layers
        x = real_audio(m, rec)
        x[:50] = (rec["extra"]["k"] + 1) / 1000 / 50
        return x

    monkeypatch.setattr(F, "encode_layers", fake_layers)
    monkeypatch.setattr(F, "_record_audio", tagged_audio)
    wdir = tiny_whisper_dir(tmp_path / "w")
    cfg = T.TrainConfig(batch_size=8, lr=1e-2, max_epochs=6, patience=100, hidden=16)
    s = T.train_heads(manifest, ["emotion", "paralinguistic"], wdir, tmp_path / "h", cfg=cfg)
    pm = s["metrics"]["test"]["paralinguistic"]
    assert set(pm) >= {"mAP", "micro_f1"} and pm["n"] == 12
    assert pm["mAP"] > 0.8 and s["metrics"]["test"]["emotion"]["accuracy"] > 0.8
    heads = load_heads(tmp_path / "h")
    assert heads.args.task("paralinguistic").multi_label
    cfg_json = json.loads((tmp_path / "h" / "config.json").read_text())
    assert cfg_json["qa"]["emotion"]["state"] == "passed"
