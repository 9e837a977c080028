"""The encoder-feature cache: per-layer pooled features equal a direct encoder pass; shards
are resumable after a kill; provenance in the index; registered as derived data; the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _heads_helpers import heads_manifest, tiny_whisper_dir

from mlx_audio_stack.cli import main
from mlx_audio_stack.heads import features as F
from mlx_audio_stack.models.whisper.load import load_model


@pytest.fixture
def setup(tmp_path):
    return heads_manifest(tmp_path, n_speakers=6, per_speaker=2), tiny_whisper_dir(
        tmp_path / "whisper-tiny-rand"
    )


def test_cache_matches_encoder_and_has_provenance(tmp_path, setup):
    manifest, wdir = setup
    cache = F.cache_features(manifest, wdir, tmp_path / "feats", pool=5, shard_size=5)
    idx = json.loads((tmp_path / "feats" / "index.json").read_text())
    assert idx["complete"] and idx["n_records"] == 12 and len(idx["shards"]) == 3
    assert len(idx["manifest_sha256"]) == 64 and len(idx["weights_sha256"]) == 64
    assert idx["n_layers"] == 3 and idx["dtype"] == "float16" and idx["pool"] == 5
    feats = cache.load_all()
    from mlx_audio_stack.data.manifest import read_manifest

    m = read_manifest(manifest)
    rec = m.records[3]
    x = F._record_audio(m, rec)
    direct = F.encode_layers(load_model(wdir, "float32"), x, 5)
    got = feats[rec["id"]]
    assert got.shape == direct.shape == (3, int(np.ceil(np.ceil(x.size / 320) / 5)), 32)
    np.testing.assert_allclose(got, direct, rtol=2e-3, atol=2e-3)  # float16 on disk
    reg = json.loads((tmp_path / "derived.json").read_text())
    assert reg[0]["kind"] == "feature-cache" and reg[0]["source_manifest_hash"] == m.content_hash


def test_resume_after_kill_skips_finished_shards(tmp_path, setup, monkeypatch):
    manifest, wdir = setup
    real = F.encode_layers
    calls = {"n": 0}

    def dying(model, audio, pool):
        calls["n"] += 1
        if calls["n"] == 8:  # inside the second shard
            raise KeyboardInterrupt
        return real(model, audio, pool)

    monkeypatch.setattr(F, "encode_layers", dying)
    with pytest.raises(KeyboardInterrupt):
        F.cache_features(manifest, wdir, tmp_path / "feats", shard_size=5)
    out = tmp_path / "feats"
    assert sorted(p.name for p in out.iterdir()) == ["index.json", "shard-00000.safetensors"]
    assert not json.loads((out / "index.json").read_text())["complete"]
    mtime = (out / "shard-00000.safetensors").stat().st_mtime_ns
    calls["n"] = 100
    F.cache_features(manifest, wdir, out, shard_size=5)
    assert calls["n"] == 100 + 7  # only the 7 records of the unfinished shards
    assert (out / "shard-00000.safetensors").stat().st_mtime_ns == mtime
    monkeypatch.setattr(F, "encode_layers", real)
    fresh = F.cache_features(manifest, wdir, tmp_path / "fresh", shard_size=5).load_all()
    resumed = F.open_cache(out).load_all()
    assert sorted(fresh) == sorted(resumed)
    for k in fresh:
        np.testing.assert_array_equal(fresh[k], resumed[k])
    with pytest.raises(F.FeatureCacheError, match="pool"):  # other settings: refused
        F.cache_features(manifest, wdir, out, shard_size=5, pool=10)


def test_cli(tmp_path, setup, capsys):
    manifest, wdir = setup
    rc = main(["features", "cache", str(manifest), "--model", str(wdir), "--out",
               str(tmp_path / "f"), "--quiet"])  # fmt: skip
    assert rc == 0 and "12 records" in capsys.readouterr().out
    rc = main(["features", "cache", str(tmp_path / "nope.jsonl"), "--model", str(wdir),
               "--out", str(tmp_path / "g")])  # fmt: skip
    assert rc == 1 and "nope.jsonl" in capsys.readouterr().err
