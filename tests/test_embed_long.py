"""`mas embed` streams long files (issue 16 item 8): both embedders read them block by block
(`audio.stream_audio`), in bounded memory. The voice encoder's streamed embedding equals the
whole-file one; ECAPA's is, past LONG_SECONDS, the mean of equal windows (its documented rule),
and the whole-utterance one below. Tiny random models: what is tested is the reading and the
rule, not the weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest
import soundfile as sf
from test_bad_audio import _tiny_ecapa
from test_voice_encoder_model import TINY, _random_state, _speechlike

from mlx_audio_stack.audio import load_audio
from mlx_audio_stack.models.ecapa import load_model as load_ecapa
from mlx_audio_stack.models.ecapa.embed import LONG_SECONDS
from mlx_audio_stack.models.voice_encoder import VoiceEncoderNet
from mlx_audio_stack.models.voice_encoder import load_model as load_voice_encoder
from mlx_audio_stack.paths import REPO_ROOT
from mlx_audio_stack.weights_io import save_model_dir

LONG_MINUTES = 30  # the long file: 30 min at 16 kHz, 115 MB as float32 (read whole: more)
RSS_BOUND_MB = 80  # peak RSS growth allowed while embedding it, after a 2-minute warm-up file
# (measured on Linux: 1-16 MB streamed; read whole, as before streaming, 1.4-1.6 GB)


def _tiny_voice_encoder(path: Path) -> Path:
    w = {k: mx.array(v) for k, v in VoiceEncoderNet(TINY).sanitize(_random_state(TINY)).items()}
    return save_model_dir(path, w, {"model_type": "voice_encoder", "args": vars(TINY)})


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("models")
    return {"voice-encoder": _tiny_voice_encoder(d / "ve"), "ecapa": _tiny_ecapa(d / "ecapa")}


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """13 s of speech-like sound at 22.05 kHz stereo (resampled while streaming)."""
    p = tmp_path_factory.mktemp("clip") / "clip.wav"
    x = _speechlike(13 * 22050, seed=3)
    sf.write(p, np.stack([x, 0.5 * x], axis=1), 22050, subtype="FLOAT")
    return p


def test_voice_encoder_streamed_equals_whole(models, clip):
    """Partials computed block by block (blocks shorter than a partial, and long ones) are the
    whole file's partials: embeddings equal within 1e-6."""
    enc = load_voice_encoder(models["voice-encoder"])
    whole, per = enc.embed(clip, return_partials=True)
    assert per[0].shape[0] >= 15
    for block_s in (0.3, 0.77, 5.0, 60.0):
        p = enc.file_partials(clip, block_s=block_s)
        assert p.shape == per[0].shape
        np.testing.assert_allclose(p, per[0], atol=1e-6)
        e = p.mean(axis=0)
        np.testing.assert_allclose(e / np.linalg.norm(e), whole[0], atol=1e-6)


def test_ecapa_windows_rule(models, clip):
    """Up to the window length the streamed embedding is the whole-utterance one (1e-5); past it,
    the mean of the raw embeddings of k equal consecutive windows (1e-5), which differs from the
    whole-utterance embedding (so the rule is what is checked)."""
    enc = load_ecapa(models["ecapa"])
    whole = enc.embed(clip)[0]
    for block_s in (0.77, 60.0):
        np.testing.assert_allclose(enc.embed_file_windows(clip, block_s=block_s), whole, atol=1e-5)
    x = load_audio(clip)
    k, n = 4, x.size  # windows of at most 3.5 s: ceil(13 / 3.5) = 4
    ref = enc.embed([x[i * n // k : (i + 1) * n // k] for i in range(k)]).mean(axis=0)
    got = enc.embed_file_windows(clip, window_s=3.5, block_s=0.77)
    np.testing.assert_allclose(got, ref, atol=1e-5)
    assert np.abs(got - whole).max() > 1e-3
    assert LONG_SECONDS == 120.0  # the README states it


DRIVER = r"""
import json, resource, sys
from mlx_audio_stack.cli import main
def peak():
    # the process's own high-water RSS in MB: /proc's VmHWM (getrusage's ru_maxrss keeps the
    # forking parent's peak across exec on Linux, hiding the child's); elsewhere ru_maxrss
    try:
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("VmHWM:")) / 1024
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # macOS: bytes
short, long_, model, out = sys.argv[1:5]
rc0 = main(["embed", short, "--model", model, "--out", out + ".short.json", "--quiet"])
before = peak()
rc1 = main(["embed", long_, "--model", model, "--out", out + ".long.json", "--quiet"])
print(json.dumps({"rc": [rc0, rc1], "before": before, "after": peak()}))
"""


@pytest.fixture(scope="module")
def long_file(tmp_path_factory, clip) -> tuple[Path, Path]:
    """(2-minute file, 30-minute file) at 16 kHz mono PCM_16: speech-like sound repeated, the
    long one written in pieces (the test process never holds it whole). The short one is one
    ECAPA window long, so the warm-up has already allocated one window's buffers."""
    d = tmp_path_factory.mktemp("long")
    piece = (_speechlike(60 * 16000, seed=1) * 32767 * 0.5).astype(np.int16)
    short, long_ = d / "short.wav", d / "long.wav"
    sf.write(short, np.tile(piece, int(LONG_SECONDS) // 60), 16000, subtype="PCM_16")
    with sf.SoundFile(long_, "w", 16000, 1, "PCM_16") as f:
        for _ in range(LONG_MINUTES):
            f.write(piece)
    return short, long_


@pytest.mark.slow
@pytest.mark.parametrize("name", ["voice-encoder", "ecapa"])
def test_long_file_bounded_memory(models, long_file, tmp_path, name):
    """Embedding a 30-minute file through `mas embed` raises the process's peak RSS by less than
    RSS_BOUND_MB over a 2-minute file's run (the file alone is 115 MB as float32, and the whole-
    file path also builds spectra several times that size); the result is a finite embedding."""
    short, long_ = long_file
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    p = subprocess.run(
        [
            sys.executable,
            "-c",
            DRIVER,
            str(short),
            str(long_),
            str(models[name]),
            str(tmp_path / "e"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO_ROOT,
        env=env,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    r = json.loads(p.stdout.strip().splitlines()[-1])
    assert r["rc"] == [0, 0], r
    grew = r["after"] - r["before"]
    if os.environ.get("MAS_TEST_VERBOSE"):
        print(name, r, f"grew {grew:.1f} MB")
    assert grew < RSS_BOUND_MB, f"{name}: peak RSS grew {grew:.0f} MB (bound {RSS_BOUND_MB})"
    emb = json.loads((tmp_path / "e.long.json").read_text())["embedding"]
    assert len(emb) in (16, 24) and np.isfinite(emb).all()
