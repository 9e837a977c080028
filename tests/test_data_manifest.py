"""Manifests, taxonomy and the data registry / DATA_INDEX.md."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from test_qa_support import clean_records, write

import mlx_audio_stack  # noqa: F401
from mlx_audio_stack.cli import main
from mlx_audio_stack.data import registry, taxonomy
from mlx_audio_stack.data.manifest import ManifestError, assign_splits, manifest_hash, read_manifest
from mlx_audio_stack.data.taxonomy import TaxonomyError


def test_roundtrip_relative_paths_and_hash(tmp_path):
    recs = clean_records(tmp_path)
    p = write(recs, tmp_path / "sub" / "m.jsonl")
    m = read_manifest(p)
    assert len(m.records) == len(recs) and not m.parse_errors
    assert m.records[0]["audio"] == "../audio/s0_0.wav"  # relative to the manifest's folder
    assert m.audio_path(m.records[0]) == (tmp_path / "audio" / "s0_0.wav").resolve()
    assert m.content_hash == manifest_hash(p)
    p.write_text(p.read_text().replace('"happy"', '"sad"', 1))
    assert manifest_hash(p) != m.content_hash
    with open(p, "a") as f:
        f.write("[1, 2]\n")
    assert read_manifest(p).parse_errors[0][0] == len(recs) + 1
    with pytest.raises(ManifestError, match="no such manifest"):
        read_manifest(tmp_path / "missing.jsonl")


def test_assign_splits_deterministic_speaker_disjoint(tmp_path):
    recs = [{"id": f"u{i}", "speaker": f"s{i % 40}"} for i in range(400)]
    a, b = assign_splits(recs, seed=3), assign_splits(list(reversed(recs)), seed=3)
    by_id = {r["id"]: r["split"] for r in b}
    assert all(r["split"] == by_id[r["id"]] for r in a)
    spk_splits = {}
    for r in a:
        spk_splits.setdefault(r["speaker"], set()).add(r["split"])
    assert all(len(s) == 1 for s in spk_splits.values())
    assert {r["split"] for r in a} == {"train", "valid", "test"}


def test_taxonomy_closed_and_open():
    assert taxonomy.normalize("emotion", "ANG") == "angry"
    assert taxonomy.normalize("gender", "F") == "female"
    assert taxonomy.normalize("speaker_count", "3+") == "3"
    with pytest.raises(TaxonomyError, match="not in the taxonomy"):
        taxonomy.normalize("emotion", "bored")
    with pytest.raises(TaxonomyError, match="unknown label task"):
        taxonomy.get_task("mood")
    m = taxonomy.mapping("emotion")
    # emotion2vec+'s order (its tokens.txt): angry 0 ... surprised 7, unknown 8
    assert m["angry"] == 0 and m["neutral"] == 4 and m["surprised"] == 7 and len(m) == 9
    assert taxonomy.normalize("emotion", "calm") == "neutral"
    # open set: sorted, independent of order and duplicates
    assert taxonomy.mapping("speaker", ["b", "a", "c", "a"]) == {"a": 0, "b": 1, "c": 2}
    assert taxonomy.mapping("speaker", ["c", "b", "a"]) == taxonomy.mapping("speaker", "abc")
    assert taxonomy.encode("emotion", "sad") == 6


def test_taxonomy_mapping_same_in_fresh_processes():
    code = (
        "import mlx_audio_stack.data.taxonomy as t;"
        "print(t.mapping_digest('speaker', ['1688', '1998', '2033', 'x', 'y']),"
        " t.mapping_digest('emotion'))"
    )
    outs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            env=dict(os.environ, PYTHONHASHSEED=seed),
            check=True,
        ).stdout
        for seed in ("1", "2", "random")
    }
    assert len(outs) == 1


def test_data_index_is_current():
    """DATA_INDEX.md is generated from the registry: regenerate with `mas data index`."""
    assert registry.index_is_current(), "DATA_INDEX.md is out of date: run `mas data index`"
    text = registry.render_index()
    for d in registry.DATASETS:
        assert f"| {d.name} |" in text
    assert "| ravdess |" in text and "no (non-commercial)" in text


def test_register_derived_and_index(tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "DERIVED_JSON", tmp_path / "derived.json")
    src = write(clean_records(tmp_path), tmp_path / "m.jsonl")
    registry.register_derived(
        registry.DerivedArtifact(
            "whisper-tiny-features",
            "feature-cache",
            str(tmp_path / "cache"),
            "mas features ...",
            source_manifest=str(src),
        )
    )
    items = json.loads((tmp_path / "derived.json").read_text())
    assert items[0]["source_manifest_hash"] == manifest_hash(src)
    text = registry.render_index()
    assert "whisper-tiny-features" in text and manifest_hash(src)[:12] in text
    assert "local (not in git)" in text  # outside the repo: no machine-dependent size
    idx = tmp_path / "INDEX.md"
    registry.write_index(idx)
    assert registry.index_is_current(idx)
    idx.write_text(idx.read_text() + "edited\n")
    assert not registry.index_is_current(idx)


def test_cli_data_index_check(capsys):
    assert main(["data", "index", "--check"]) == 0
    assert "up to date" in capsys.readouterr().out
