"""Silero VAD, tier 3: end to end on real speech (shared data), through `mas` and the library.

Weights come the way a user gets them: `mas weights get silero-vad` from the installed
silero-vad package (no torch needed for this file: the JIT is read without it)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import require

import mlx_audio_stack  # noqa: F401  (BLAS before mlx)
from mlx_audio_stack.cli import main
from mlx_audio_stack.evaluation.rttm import read_rttm, read_uem
from mlx_audio_stack.evaluation.vad import DetectionError, detection_error
from mlx_audio_stack.models.silero_vad import load_vad, speech_timestamps


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    require("silero_vad", "pip install silero-vad (ships silero_vad.jit)")
    out = tmp_path_factory.mktemp("w") / "silero-vad"
    assert main(["weights", "get", "silero-vad", "--offline", "--out", str(out)]) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model_type"] == "silero_vad" and cfg["args"]["sample_rates"] == [16000, 8000]
    return out


def test_cli_json_txt_rttm(weights, shared_data, tmp_path, capsys):
    files = [
        str(shared_data / "ami_es2011a" / "ES2011a.Headset-0-40s-46s.wav"),
        str(shared_data / "ljspeech" / "LJ002-0020.wav"),  # 22.05 kHz: resampled
        str(shared_data / "fsdd" / "recordings" / "3_george_7.wav"),  # 8 kHz branch
    ]
    out = tmp_path / "vad.json"
    assert main(["vad", *files, "--model", str(weights), "-o", str(out)]) == 0
    res = json.loads(out.read_text())
    assert [r["file"] for r in res] == files
    for r in res:
        assert r["segments"], r["file"]
        for s in r["segments"]:
            assert 0 <= s["start"] < s["end"] <= r["duration_s"] + 1e-3
    assert res[1]["sample_rate"] == 22050
    assert (
        main(
            [
                "vad",
                files[0],
                "--model",
                str(weights),
                "--format",
                "rttm",
                "--threshold",
                "0.6",
                "--speech-pad-ms",
                "0",
            ]
        )
        == 0
    )
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines and all(
        ln.startswith("SPEAKER ES2011a.Headset-0-40s-46s 1 ")
        and ln.endswith("<NA> <NA> speech <NA> <NA>")
        for ln in lines
    )
    assert (
        main(["vad", files[2], "--model", str(weights), "--format", "txt", "--branch", "16000"])
        == 0
    )
    start, end = capsys.readouterr().out.split("\t")[1:]
    assert 0 <= float(start) < float(end) <= 1.0


def test_cli_errors(weights, tmp_path, capsys):
    assert main(["vad", str(tmp_path / "missing.wav"), "--model", str(weights)]) == 1
    assert "no such file" in capsys.readouterr().err
    (tmp_path / "bad.wav").write_bytes(b"RIFF0000WAVEjunk")
    assert main(["vad", str(tmp_path / "bad.wav"), "--model", str(weights)]) == 1
    assert "not a readable audio file" in capsys.readouterr().err
    assert main(["vad", str(tmp_path / "bad.wav"), "--model", str(tmp_path)]) == 1
    assert "missing config.json" in capsys.readouterr().err


def test_ami_detection_error(weights, shared_data):
    """Speech detection against the AMI speaker turns: the figures reports/vad.md gives for
    the JIT (identical segments), with a margin."""
    folder = shared_data / "ami_meeting_clips"
    ref, uem = read_rttm(folder / "debug.train.rttm"), read_uem(folder / "debug.train.uem")
    assert len(ref) == 10
    model = load_vad(weights)
    total = DetectionError()
    for wav in sorted(folder.glob("*.wav")):
        segs = speech_timestamps(wav, model, return_seconds=False)
        hyp = [(s["start"] / 16000, s["end"] / 16000) for s in segs]
        total = total + detection_error(ref[wav.stem], hyp, uem[wav.stem], collar=0.25)
    assert total.speech_s > 100
    assert total.missed < 0.25 and total.false_alarm < 0.05, total


def test_librispeech_is_mostly_speech(weights, shared_data):
    model = load_vad(weights)
    files = sorted((shared_data / "librispeech" / "test-other").rglob("*.flac"))[:3]
    assert files
    for f in files:
        segs = speech_timestamps(f, model, return_seconds=True, time_resolution=3)
        dur = sf.info(str(f)).duration
        covered = sum(s["end"] - s["start"] for s in segs)
        assert covered > 0.6 * dur, (f.name, covered, dur)
        assert np.all(np.diff([s["start"] for s in segs]) > 0)


def _silero_data() -> Path:
    import importlib.util

    require("silero_vad", "pip install silero-vad (ships silero_vad.jit)")
    spec = importlib.util.find_spec("silero_vad")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def test_sources_are_detected_unambiguously():
    from mlx_audio_stack.convert import detect

    data = _silero_data()
    for src in (data / "silero_vad.jit", data / "silero_vad_16k.safetensors", data):
        assert detect(src).model_type == "silero_vad", src


def test_jit_converts_without_torch(tmp_path):
    """The converter reads the TorchScript archive with the safe unpickler: torch is never
    imported (checked in a fresh interpreter)."""
    import subprocess
    import sys

    jit = _silero_data() / "silero_vad.jit"
    code = (
        "import sys, mlx_audio_stack\n"
        "from mlx_audio_stack.convert import convert\n"
        f"convert({str(jit)!r}, {str(tmp_path / 'w')!r})\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "w" / "model.safetensors").exists()
