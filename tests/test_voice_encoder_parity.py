"""Voice encoder tiers 2 and 3: live parity against resemblyzer's own torch code, with the
real weights it ships, on real speech.

The reference is resemblyzer 0.1.4 (`requirements/ref-voice-encoder*.txt`: the package with
--no-deps, webrtcvad from webrtcvad-wheels; torch from tools/install_refs.sh). Its
`pretrained.pt` is converted with `mlx_audio_stack.convert.convert` (the safe reader, legacy
torch format) and both sides embed the same arrays: `VoiceEncoder.embed_utterance(wav)` (no
preprocess_wav, see models/voice_encoder/embed.py) against our `embed`.

Tolerances (the issue's): embeddings within 1e-4 absolute, cosine > 0.99999, for utterances
from 0.3 s (shorter than one 1.6 s partial: one zero-padded partial) to a whole file.

Without resemblyzer, `test_embeddings_match_fixture` compares against its embeddings committed
in tests/fixtures/voice_encoder (made by tools/make_voice_encoder_fixtures.py), with our weights
from `mas weights get voice-encoder` (converted from the fixture's checkpoint).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _helpers import check_fixture_audio, installed_version, load_fixture, load_tool
from conftest import require

from mlx_audio_stack.convert import convert
from mlx_audio_stack.kernels import lstm as cpu_lstm
from mlx_audio_stack.models.voice_encoder import load_model
from mlx_audio_stack.models.voice_encoder.frontend import partial_slices, utterance_partials
from mlx_audio_stack.models.voice_encoder.model import VoiceEncoderArgs

EMB_ATOL = 1e-4
MIN_COS = 0.99999
TOOL = load_tool("make_voice_encoder_fixtures")
LENGTHS = TOOL.LENGTHS


@pytest.fixture(scope="module")
def ref(tmp_path_factory):
    """resemblyzer's VoiceEncoder (torch, CPU) and our encoder of its converted weights."""
    hint = "sh tools/install_refs.sh (requirements/ref-voice-encoder*.txt)"
    require("torch", hint)
    require("resemblyzer", hint)
    require("webrtcvad", hint)  # resemblyzer's package __init__ imports its audio module
    import torch
    from resemblyzer.voice_encoder import VoiceEncoder as RefEncoder

    torch.set_num_threads(2)
    model = RefEncoder("cpu", verbose=False)
    src = Path(__import__("resemblyzer").__file__).parent / "pretrained.pt"
    out = convert(src, tmp_path_factory.mktemp("ve") / "voice-encoder")
    return model, load_model(out), torch


@pytest.fixture(scope="module")
def utts(shared_data):
    out = TOOL.utterances(shared_data)
    assert len(out) == len(LENGTHS)
    return out


def _check(got: np.ndarray, want: np.ndarray, what: str) -> None:
    diff = float(np.abs(got - want).max())
    cos = float(got @ want / np.linalg.norm(got) / np.linalg.norm(want))
    assert diff < EMB_ATOL and cos > MIN_COS, f"{what}: max |diff| {diff:.2e}, cosine {cos:.8f}"


def test_weights_equal_the_reference(ref):
    model, enc, _ = ref
    for k, v in model.state_dict().items():
        ours = enc.model
        for part in k.split("."):
            ours = getattr(ours, part)
        np.testing.assert_array_equal(np.array(ours), v.numpy(), err_msg=k)


def test_partial_windows_equal_resemblyzer(ref):
    model = ref[0]
    for n in (1, 4000, 25599, 25600, 30400, 35200, 48000, 123457):
        for rate, cov in ((1.3, 0.75), (2.0, 0.5), (0.625, 1.0)):
            wav_slices, mel_slices = model.compute_partial_slices(n, rate, cov)
            assert partial_slices(n, VoiceEncoderArgs(), rate, cov) == [
                s.start for s in mel_slices
            ], (n, rate, cov)


@pytest.mark.slow
def test_embed_equals_embed_utterance_on_real_speech(ref, utts):
    model, enc, _ = ref
    batch = enc.embed(utts)  # every partial of every utterance in one batch
    for w, got in zip(utts, batch):
        want = model.embed_utterance(w)
        _check(got, want, f"{w.size / 16000:.2f} s")
        _check(enc.embed(w)[0], want, f"{w.size / 16000:.2f} s alone")


def test_partials_and_mels_equal_the_reference(ref, utts):
    from resemblyzer import audio

    model, enc, torch = ref
    w = utts[9]  # 7 s: 8 partials
    want, want_parts, wav_slices = model.embed_utterance(w, return_partials=True)
    got, parts = enc.embed(w, return_partials=True)
    assert parts[0].shape == want_parts.shape
    for a, b in zip(parts[0], want_parts):
        _check(a, b, "partial")
    padded = np.pad(w, (0, max(0, wav_slices[-1].stop - w.size)))
    ref_mel = audio.wav_to_mel_spectrogram(padded)
    mels = utterance_partials(w, enc.args)
    for m, s in zip(mels, wav_slices):
        lo = s.start // 160
        np.testing.assert_allclose(m, ref_mel[lo : lo + 160], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_mlx_recurrence_equals_the_reference(ref, utts, monkeypatch):
    """The plain MLX path (what a Mac's GPU runs) against resemblyzer, CPU path turned off."""
    model, enc, _ = ref
    monkeypatch.setattr(cpu_lstm, "applies", lambda x: False)
    for w in (utts[0], utts[7]):  # 0.3 s (one padded partial) and 3 s (three)
        _check(enc.embed(w)[0], model.embed_utterance(w), f"MLX path, {w.size / 16000:.2f} s")


def test_embeddings_match_fixture(shared_data, utts, tmp_path):
    """resemblyzer's committed embeddings (no torch needed): within EMB_ATOL, cosine > MIN_COS."""
    import importlib.util
    import json

    from mlx_audio_stack.paths import weights_dir

    meta, arrays = load_fixture("voice_encoder")
    check_fixture_audio(meta, shared_data)
    have, want = installed_version("resemblyzer"), meta["reference"]["resemblyzer"]
    assert have in (None, want), f"fixture made with resemblyzer {want}, installed {have}: rerun"
    if importlib.util.find_spec("resemblyzer") is not None:
        folder = convert(TOOL.checkpoint(), tmp_path / "voice-encoder")
    else:
        folder = weights_dir() / "voice-encoder"
        if not (folder / "config.json").is_file():
            pytest.skip(f"no resemblyzer and no {folder}: `mas weights get voice-encoder`")
    config = json.loads((folder / "config.json").read_text())
    assert config["source_sha256"] == meta["source_sha256"], "weights from another checkpoint"
    enc = load_model(folder)
    for w, got, want in zip(utts, enc.embed(utts), arrays["embeddings"]):
        _check(got, want, f"{w.size / 16000:.2f} s")
    _, parts = enc.embed(utts[TOOL.PARTIALS_OF], return_partials=True)
    assert parts[0].shape == arrays["partials"].shape
    for a, b in zip(parts[0], arrays["partials"]):
        _check(a, b, "partial")
