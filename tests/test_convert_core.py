"""The shared conversion machinery: safe torch reader, registry, atomic strict weights folders."""

from __future__ import annotations

import pickle
import zipfile
from collections import OrderedDict

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from conftest import require

from mlx_audio_stack.convert import convert, detect, model_types
from mlx_audio_stack.convert.torch_pickle import load_torch_checkpoint
from mlx_audio_stack.errors import ConversionError, UnsafePickleError, WeightsError
from mlx_audio_stack.weights_io import load_model_dir, load_strict, save_model_dir


def _zip_pickle(path, payload: bytes):
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", payload)
        zf.writestr("archive/version", "3\n")


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned > /tmp/mas-pwned",))


def test_malicious_pickle_is_refused_and_names_the_global(tmp_path):
    p = tmp_path / "evil.pt"
    _zip_pickle(p, pickle.dumps({"model": _Evil()}, protocol=2))
    with pytest.raises(UnsafePickleError, match=r"posix\.system|nt\.system"):
        load_torch_checkpoint(p)


def test_builtin_eval_is_refused(tmp_path):
    class E:
        def __reduce__(self):
            return (eval, ("1+1",))

    p = tmp_path / "eval.pt"
    _zip_pickle(p, pickle.dumps(E(), protocol=2))  # as torch.save writes
    with pytest.raises(UnsafePickleError, match="builtins.eval"):
        load_torch_checkpoint(p)


def test_non_checkpoints_give_clear_errors(tmp_path):
    txt = tmp_path / "notes.pt"
    txt.write_text("hello")
    with pytest.raises(ConversionError, match="not a PyTorch checkpoint"):
        load_torch_checkpoint(txt)
    legacy = tmp_path / "old.pt"
    legacy.write_bytes(pickle.dumps({"a": 1}, protocol=2))
    with pytest.raises(ConversionError, match="legacy"):
        load_torch_checkpoint(legacy)
    with pytest.raises(ConversionError, match="no such file"):
        load_torch_checkpoint(tmp_path / "missing.pt")


def test_torch_checkpoint_roundtrip_without_torch_at_read_time(tmp_path):
    require("torch", "pip install torch==2.13.0")
    import torch

    sd = OrderedDict(
        w=torch.randn(3, 4),
        t=torch.randn(4, 3).t(),
        i=torch.arange(5),
        h=torch.randn(2, 2).half(),
        b=torch.randn(3).bfloat16(),
        s=torch.randn(8)[2:5],
    )
    torch.save({"model": sd, "epoch": 3, "nested": {"x": [torch.ones(2)]}}, tmp_path / "c.pt")
    got = load_torch_checkpoint(tmp_path / "c.pt")
    assert got["epoch"] == 3
    for k, v in sd.items():
        np.testing.assert_array_equal(
            got["model"][k], v.float().numpy() if v.is_floating_point() else v.numpy()
        )
    np.testing.assert_array_equal(got["nested"]["x"][0], np.ones(2, np.float32))


def test_registry_detection_errors(tmp_path):
    assert "whisper" in model_types()
    with pytest.raises(ConversionError, match="cannot tell which model"):
        detect(tmp_path)
    with pytest.raises(ConversionError, match="unknown"):
        convert(tmp_path, tmp_path / "out", model="no-such-model")
    with pytest.raises(ConversionError, match="no such file"):
        convert(tmp_path / "nope" / "x.pt", tmp_path / "out")


def test_save_is_atomic_on_failure(tmp_path, monkeypatch):
    out = tmp_path / "w"

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(mx, "save_safetensors", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        save_model_dir(out, {"a": mx.zeros(2)}, {"model_type": "x"})
    assert list(tmp_path.iterdir()) == []  # neither the folder nor a temp folder is left


def test_save_refuses_overwrite_and_replaces_when_asked(tmp_path):
    out = tmp_path / "w"
    save_model_dir(out, {"a": mx.zeros(2)}, {"model_type": "x"})
    with pytest.raises(WeightsError, match="already exists"):
        save_model_dir(out, {"a": mx.zeros(2)}, {"model_type": "x"})
    save_model_dir(out, {"a": mx.ones(3)}, {"model_type": "y"}, overwrite=True)
    cfg, w = load_model_dir(out)
    assert cfg["model_type"] == "y" and w["a"].shape == (3,)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w"]


def test_strict_load_names_every_difference():
    m = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    good = {
        "layers.0.weight": mx.zeros((3, 4)),
        "layers.0.bias": mx.zeros(3),
        "layers.1.weight": mx.zeros((2, 3)),
        "layers.1.bias": mx.zeros(2),
    }
    load_strict(m, good, "ok")
    bad = dict(good)
    del bad["layers.1.bias"]
    bad["extra.weight"] = mx.zeros(1)
    bad["layers.0.weight"] = mx.zeros((4, 4))
    with pytest.raises(WeightsError) as e:
        load_strict(m, bad, "ckpt")
    msg = str(e.value)
    assert "layers.1.bias" in msg and "extra.weight" in msg
    assert "layers.0.weight: expected (3, 4), got (4, 4)" in msg


# ---------------------------------------------------------------- hostile-input guards (issue 16)
def test_byte_cap_is_stated_and_overridable(tmp_path, monkeypatch):
    require("torch", "pip install torch==2.13.0")
    import torch

    torch.save({"w": torch.ones(16)}, tmp_path / "c.pt")
    monkeypatch.setenv("MAS_MAX_CHECKPOINT_BYTES", "32")
    with pytest.raises(ConversionError, match=r"c\.pt.*over 32 bytes.*MAS_MAX_CHECKPOINT_BYTES"):
        load_torch_checkpoint(tmp_path / "c.pt")
    monkeypatch.setenv("MAS_MAX_CHECKPOINT_BYTES", "64")
    np.testing.assert_array_equal(load_torch_checkpoint(tmp_path / "c.pt")["w"], np.ones(16))


def test_views_sharing_one_storage_read_it_once_and_only_as_far_as_needed(tmp_path):
    require("torch", "pip install torch==2.13.0")
    import torch

    base = torch.arange(1000, dtype=torch.float32)
    torch.save({"head": base[:4], "mid": base[10:20:2]}, tmp_path / "v.pt")
    got = load_torch_checkpoint(tmp_path / "v.pt")
    np.testing.assert_array_equal(got["head"], np.arange(4, dtype=np.float32))
    np.testing.assert_array_equal(got["mid"], np.arange(10, 20, 2, dtype=np.float32))


def test_checked_args_types_ranges_and_divisibility():
    from mlx_audio_stack.models.whisper.model import OFFICIAL_DIMS, ModelDimensions

    good = OFFICIAL_DIMS["tiny"].to_dict()
    assert ModelDimensions.from_dict(good) == OFFICIAL_DIMS["tiny"]
    assert ModelDimensions.from_dict({**good, "n_mels": 80.0}).n_mels == 80  # integral float
    cases = {
        "n_audio_head": (5.5, "expected an integer"),
        "n_audio_layer": (-1, r"out of range \[1, 1024\]"),
        "n_vocab": (10**12, r"out of range \[1, 10000000\]"),
        "n_text_head": (5, "not divisible"),
        "n_mels": ("80", "expected an integer"),
    }
    for key, (value, msg) in cases.items():
        with pytest.raises(WeightsError, match=f"{key}.*{msg}|{msg}.*{key}"):
            ModelDimensions.from_dict({**good, key: value}, "cfg.json")
    with pytest.raises(ConversionError, match=r"unknown args \['bogus'\]"):
        ModelDimensions.from_dict({**good, "bogus": 1}, "cfg.json", ConversionError)
    with pytest.raises(WeightsError, match=r"missing args \['n_mels'\]"):
        ModelDimensions.from_dict({k: v for k, v in good.items() if k != "n_mels"})


def test_safetensors_header_accepts_mlx_files_and_names_overlaps(tmp_path):
    import json
    import struct

    from mlx_audio_stack.weights_io import load_safetensors, safetensors_header

    mx.save_safetensors(str(tmp_path / "ok.safetensors"), {"a": mx.zeros((2, 3)), "b": mx.ones(4)})
    assert sorted(safetensors_header(tmp_path / "ok.safetensors")) == ["a", "b"]
    assert load_safetensors(tmp_path / "ok.safetensors")["b"].tolist() == [1, 1, 1, 1]
    h = json.dumps(
        {
            "a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
            "b": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]},
        }
    ).encode()
    (tmp_path / "bad.safetensors").write_bytes(struct.pack("<Q", len(h)) + h + bytes(16))
    with pytest.raises(WeightsError, match=r"bad\.safetensors: tensors 'a' and 'b' overlap"):
        load_safetensors(tmp_path / "bad.safetensors")


def test_hyperparams_arithmetic_is_bounded(tmp_path):
    from mlx_audio_stack.convert.ecapa import read_hyperparams

    hp = tmp_path / "hyperparams.yaml"
    hp.write_text("n: 8\nk: !ref <n> ** 3 // 2\nbig: !ref <n> ** <n> ** <n>\n")
    with pytest.raises(ConversionError, match=r"hyperparams\.yaml.*8 \*\* 16777216 exceeds"):
        read_hyperparams(hp)
    hp.write_text("n: 8\nk: !ref <n> ** 3 // 2\n")
    assert read_hyperparams(hp)["k"] == 256


def test_symlinks_may_not_leave_the_folder_except_into_a_hub_snapshots_blobs(tmp_path):
    import os

    from mlx_audio_stack.weights_io import inside

    repo = tmp_path / "models--org--name"
    snap = repo / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (repo / "blobs").mkdir()
    (repo / "blobs" / "f00d").write_text("{}")
    (tmp_path / "secret").write_text("x")
    os.symlink("../../blobs/f00d", snap / "tokenizer.json")  # how the hub cache stores files
    os.symlink("../../../secret", snap / "vocab.json")
    assert inside(snap / "tokenizer.json", snap, "a symlink") == repo / "blobs" / "f00d"
    with pytest.raises(WeightsError, match=r"vocab\.json: a symlink leads outside"):
        inside(snap / "vocab.json", snap, "a symlink")
    with pytest.raises(WeightsError, match="leads outside"):
        inside("../../etc/passwd", snap, "tokenizer path")


def test_outputs_in_impossible_places_are_one_line_errors(tmp_path):
    from mlx_audio_stack.atomic import atomic_output
    from mlx_audio_stack.errors import MasError

    (tmp_path / "file").write_text("x")
    with pytest.raises(MasError, match="exists and is not a folder"):
        save_model_dir(tmp_path / "file", {"a": mx.zeros(2)}, {"model_type": "x"}, overwrite=True)
    assert (tmp_path / "file").read_text() == "x"
    with pytest.raises(MasError, match="is a folder"):
        with atomic_output(tmp_path):
            pass
    with pytest.raises(MasError, match="cannot write there"):
        with atomic_output(tmp_path / "file" / "sub.txt"):
            pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]
