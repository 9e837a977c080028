"""`mas weights get|list` for every model (issue 17, items 1 and 2): silero-vad from its wheel
without torch, hub-only weights failing with what to bring, every converted folder listed."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mlx_audio_stack import weights_get as wg
from mlx_audio_stack.cli import main
from mlx_audio_stack.errors import WeightsError

HUB_ONLY = [n for n, s in wg.SOURCES.items() if s.local is None]


def test_every_model_is_known():
    for name in ("whisper-tiny.en", "whisper-base", "whisper-small", "whisper-medium"):
        assert name in wg.SOURCES
    for name in ("whisper-large-v3", "whisper-turbo", "silero-vad"):
        assert name in wg.SOURCES
    assert wg.SOURCES["ecapa-voxceleb"].hub_repo == "speechbrain/spkrec-ecapa-voxceleb"
    assert wg.SOURCES["mossformer2-ss-16k"].hub_repo == "alibabasglab/MossFormer2_SS_16K"
    with pytest.raises(WeightsError, match="unknown weights 'nope'"):
        wg.get_weights("nope")


@pytest.mark.parametrize("name", HUB_ONLY)
def test_hub_only_weights_say_what_to_bring_offline(name, tmp_path, capsys):
    src = wg.SOURCES[name]
    assert src.manual and src.model
    rc = main(["weights", "get", name, "--offline", "--out", str(tmp_path / name)])
    err = capsys.readouterr().err
    assert rc == 1 and not (tmp_path / name).exists()
    assert f"cannot get {name}" in err and "mas convert" in err
    assert f"--out {tmp_path / name}" in err  # the folder the user asked for
    if name == "ecapa-voxceleb":
        assert "mas weights get voice-encoder" in err  # the embedder that works offline


def _pip_download_or_skip(tmp_path):
    try:
        return wg._file_from_wheel(wg.SILERO_VAD_DIST, wg.SILERO_VAD_JIT, tmp_path)
    except WeightsError as exc:
        pytest.skip(f"the package registry is unreachable here: {exc}")


def test_file_from_wheel_takes_one_file_without_dependencies(tmp_path):
    jit = _pip_download_or_skip(tmp_path)
    assert jit.name == "silero_vad.jit" and jit.stat().st_size > 100_000
    wheels = sorted(p.name for p in tmp_path.rglob("*.whl"))
    assert len(wheels) == 1 and wheels[0].startswith("silero_vad-6.2.3")  # no torch wheel
    with pytest.raises(WeightsError, match="silero_vad/data/nothing.jit"):
        wg._file_from_wheel(wg.SILERO_VAD_DIST, "silero_vad/data/nothing.jit", tmp_path / "y")
    (tmp_path / "x").mkdir()
    with pytest.raises(WeightsError, match="pip download silero-vad==0.0.0"):
        wg._file_from_wheel("silero-vad==0.0.0", wg.SILERO_VAD_JIT, tmp_path / "x")


def test_silero_vad_converts_from_the_wheel_when_the_package_is_missing(tmp_path):
    # in a child process with no silero_vad package and torch made unimportable
    code = "import sys; sys.modules['torch'] = None; " + (
        "from mlx_audio_stack import weights_get as wg; "
        "wg._package_dir = lambda p: (_ for _ in ()).throw(wg.WeightsError(p)); "
        f"print(wg.get_weights('silero-vad', {str(tmp_path / 'vad')!r}, offline=True))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if "pip download" in done.stderr:
        pytest.skip(f"the package registry is unreachable here: {done.stderr[-200:]}")
    assert done.returncode == 0, done.stderr
    cfg = json.loads((tmp_path / "vad" / "config.json").read_text())
    assert cfg["model_type"] == "silero_vad"
    assert cfg["source_sha256"] == {
        "silero_vad.jit": "e1122837f4154c511485fe0b9c64455f7b929c96fbb8d79fbdb336383ebd3720"
    }


def test_weights_list_shows_every_converted_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MAS_WEIGHTS_DIR", str(tmp_path))
    for name, mt, dtype in [("mine", "whisper", "float16"), ("vad2", "silero_vad", "float32")]:
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(json.dumps({"model_type": mt, "dtype": dtype}))
        (tmp_path / name / "model.safetensors").write_bytes(b"\0" * 2_500_000)
    (tmp_path / "not-weights").mkdir()  # no config.json: not listed
    found = wg.converted_folders()
    assert [(f["name"], f["model_type"], f["dtype"]) for f in found] == [
        ("mine", "whisper", "float16"),
        ("vad2", "silero_vad", "float32"),
    ]
    assert all(f["size"] > 2_500_000 for f in found)
    assert main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    assert "mine" in out and "float16" in out and "2.5 MB" in out
    for name in wg.SOURCES:
        assert name in out


def test_convert_model_choices_are_the_converters(capsys):
    from mlx_audio_stack.commands.convert import MODEL_TYPES
    from mlx_audio_stack.convert import model_types

    assert MODEL_TYPES == model_types()
    with pytest.raises(SystemExit):
        main(["convert", "--help"])
    text = capsys.readouterr().out
    assert "--list" not in text and "{" + ",".join(model_types()) + "}" in text


@pytest.mark.parametrize("name", ["whisper-small", "my-own-model"])
def test_a_missing_whisper_folder_names_its_own_get_command(name, tmp_path, capsys):
    assert main(["transcribe", "--model", str(tmp_path / name)]) == 1
    err = capsys.readouterr().err
    assert "whisper-tiny.en" not in err and f"--out {tmp_path / name}" in err
    assert (f"`mas weights get {name}`" in err) == (name in wg.SOURCES)
