"""Silero VAD, tier 2: parity with the silero-vad package's TorchScript model (the reference).

Per-chunk probabilities within 1e-4 of the JIT and identical `get_speech_timestamps` segments,
both branches, on a subset of every folder of the shared data (tools/eval_vad.py sweeps all of
it). Reference: `pip install -r requirements/ref-vad.txt` (silero-vad, torch pinned).

Without silero-vad, `test_probs_and_segments_match_fixture` compares against the JIT's outputs
committed in tests/fixtures/silero_vad (made by tools/make_vad_fixtures.py), with our weights
from `mas weights get silero-vad` (they must be converted from the fixture's JIT file).
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
from _helpers import check_fixture_audio, installed_version, load_fixture, load_tool
from conftest import require

import mlx_audio_stack  # noqa: F401  (BLAS before mlx)
from mlx_audio_stack.audio import load_audio
from mlx_audio_stack.models.silero_vad import (
    VADEvents,
    VADStream,
    load_vad,
    speech_probs,
    speech_timestamps,
    timestamps_from_probs,
)

TOL = 1e-4  # max |p_mlx - p_jit| per chunk
TOOL = load_tool("make_vad_fixtures")


@pytest.fixture(scope="module")
def silero():
    """The silero_vad package. The JIT runs on 1 thread, as silero's import sets it (on 2
    shared cores more threads made it 10-50x slower); other modules get their setting back."""
    require("torch", "pip install -r requirements/ref-vad.txt")
    require("silero_vad", "pip install -r requirements/ref-vad.txt")
    import torch

    threads = torch.get_num_threads()
    import silero_vad

    torch.set_num_threads(1)
    yield silero_vad
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def jit(silero):
    return silero.load_silero_vad()


@pytest.fixture(scope="module")
def jit_path(silero) -> Path:
    return Path(silero.__file__).parent / "data" / "silero_vad.jit"


@pytest.fixture(scope="module")
def model(jit_path, tmp_path_factory):
    from mlx_audio_stack.weights_get import get_weights

    # the same route as `mas weights get silero-vad --offline`, into a temporary folder
    out = get_weights("silero-vad", tmp_path_factory.mktemp("w") / "silero-vad", offline=True)
    return load_vad(out)


def subset(data: Path) -> list[str]:
    """A few files of every folder of the shared data (the fixture's files)."""
    return TOOL.subset(data)


@pytest.fixture(scope="module")
def fixture_model(tmp_path_factory):
    """Our model for the fixture test: converted from the installed silero-vad's JIT when
    there is one, else the converted weights of `mas weights get silero-vad`."""
    from mlx_audio_stack.paths import weights_dir
    from mlx_audio_stack.weights_get import get_weights

    if importlib.util.find_spec("silero_vad") is not None:
        folder = get_weights("silero-vad", tmp_path_factory.mktemp("w") / "s", offline=True)
    else:
        folder = weights_dir() / "silero-vad"
        if not (folder / "config.json").is_file():
            pytest.skip(f"no silero-vad package and no {folder}: `mas weights get silero-vad`")
    return load_vad(folder), json.loads((folder / "config.json").read_text())


@pytest.mark.slow
def test_probs_and_segments_match_fixture(shared_data, fixture_model):
    """The JIT's committed outputs (no torch needed): probabilities within TOL, same segments."""
    model, config = fixture_model
    meta, arrays = load_fixture("silero_vad")
    check_fixture_audio(meta, shared_data)
    have = installed_version("silero-vad")
    want = meta["reference"]["silero-vad"]
    assert have in (None, want), f"fixture made with silero-vad {want}, installed {have}: rerun "
    assert config["source_sha256"] == meta["source_sha256"], (
        "our weights were converted from another silero_vad.jit than the fixture's"
    )
    assert sorted(meta["audio"]) == sorted(subset(shared_data))
    for key, ref in arrays.items():
        rel, sr = key.rsplit("@", 1)
        x = load_audio(shared_data / rel, int(sr))
        ours = speech_probs(model, x, int(sr))
        assert ours.shape == ref.shape, key
        err = float(np.abs(ours - ref).max())
        assert err <= TOL, f"{key}: max |dp| {err:.2e} > {TOL}"
        got = speech_timestamps(x, model, sampling_rate=int(sr))
        assert [[g["start"], g["end"]] for g in got] == meta["segments"][key], key


def test_subset_covers_every_folder(shared_data):
    files = subset(shared_data)
    tops = {f.split("/")[0] for f in files}
    assert {"ami_meeting_clips", "fsdd", "librispeech", "ljspeech", "valentini"} <= tops
    assert len(files) >= 20


@pytest.mark.slow
@pytest.mark.parametrize("sr", [16000, 8000])
def test_probs_and_segments_match_jit(shared_data, silero, jit, model, sr):
    import torch

    worst, n_chunks, n_segments = 0.0, 0, 0
    for rel in subset(shared_data):
        x = load_audio(shared_data / rel, sr)
        ref = jit.audio_forward(torch.from_numpy(x), sr)[0].numpy()
        ours = speech_probs(model, x, sr)
        assert ours.shape == ref.shape, rel
        err = float(np.abs(ours - ref).max())
        assert err <= TOL, f"{rel} at {sr} Hz: max |dp| {err:.2e} > {TOL}"
        worst, n_chunks = max(worst, err), n_chunks + ref.size
        want = silero.get_speech_timestamps(torch.from_numpy(x), jit, sampling_rate=sr)
        got = speech_timestamps(x, model, sampling_rate=sr)
        assert got == want, f"{rel} at {sr} Hz"
        n_segments += len(want)
    assert n_segments > 20  # the subset really holds speech
    print(f"{sr} Hz: {n_chunks} chunks, max |dp| {worst:.2e}, {n_segments} segments")


@pytest.mark.parametrize("sr", [16000, 8000])
def test_segment_options_match_jit(shared_data, silero, jit, model, sr):
    import torch

    x = load_audio(shared_data / "ami_meeting_clips" / "trn00.wav", sr)
    xt = torch.from_numpy(x)
    for opts in (
        dict(threshold=0.3, neg_threshold=0.2, speech_pad_ms=100),
        dict(max_speech_duration_s=2.0, min_silence_duration_ms=300),
        dict(max_speech_duration_s=1.5, use_max_poss_sil_at_max_speech=False),
        dict(min_speech_duration_ms=0, min_silence_duration_ms=0, speech_pad_ms=0),
        dict(return_seconds=True, time_resolution=2, threshold=0.7),
    ):
        want = silero.get_speech_timestamps(xt, jit, sampling_rate=sr, **opts)
        assert speech_timestamps(x, model, sampling_rate=sr, **opts) == want, opts


@pytest.mark.parametrize("sr", [16000, 8000])
def test_streaming_matches_jit_chunk_calls(shared_data, silero, jit, model, sr):
    import torch

    x = load_audio(shared_data / "ami_meeting_clips" / "trn03.wav", sr)[: sr * 10]
    stream = VADStream(model, sr)
    n = stream.chunk_size
    jit.reset_states()
    worst = 0.0
    for i in range(0, x.size - n + 1, n):
        chunk = x[i : i + n]
        ref = jit(torch.from_numpy(chunk), sr).item()
        worst = max(worst, abs(stream(chunk) - ref))
    assert worst <= TOL
    # reset on both sides: identical again from a fresh state
    jit.reset_states()
    stream.reset()
    ref = [jit(torch.from_numpy(x[i : i + n]), sr).item() for i in range(0, 20 * n, n)]
    ours = [stream(x[i : i + n]) for i in range(0, 20 * n, n)]
    np.testing.assert_allclose(ours, ref, atol=TOL)


@pytest.mark.slow
def test_events_match_vad_iterator(shared_data, silero, jit, model):
    import torch

    x = load_audio(shared_data / "ami_meeting_clips" / "trn00.wav", 16000)
    it = silero.VADIterator(jit, sampling_rate=16000)
    ev = VADEvents(model, sample_rate=16000)
    want, got = [], []
    for i in range(0, x.size - 511, 512):
        chunk = x[i : i + 512]
        want.append(it(torch.from_numpy(chunk)))
        got.append(ev(chunk))
    assert got == want and sum(e is not None for e in want) >= 4


def test_timestamps_from_probs_fuzz(silero):
    """The segment state machine alone, on random probability tracks and option sets."""
    ref = silero.get_speech_timestamps_from_probs
    rng = np.random.default_rng(0)
    for trial in range(300):
        n = int(rng.integers(0, 400))
        walk = np.cumsum(rng.standard_normal(n) * rng.uniform(0.1, 1.0))
        probs = (1 / (1 + np.exp(-walk))).astype(np.float32).tolist()
        sr = int(rng.choice([16000, 8000]))
        opts = dict(
            threshold=float(rng.uniform(0.2, 0.8)),
            min_speech_duration_ms=int(rng.choice([0, 100, 250])),
            min_silence_duration_ms=int(rng.choice([0, 50, 100, 300])),
            speech_pad_ms=int(rng.choice([0, 30, 200])),
            max_speech_duration_s=float(rng.choice([math.inf, 0.5, 1.0, 3.0])),
            use_max_poss_sil_at_max_speech=bool(rng.integers(0, 2)),
            return_seconds=bool(rng.integers(0, 2)),
        )
        if rng.integers(0, 2):
            opts["neg_threshold"] = float(rng.uniform(0.01, opts["threshold"]))
        length = n * (512 if sr == 16000 else 256) - int(rng.integers(0, 200)) if n else 0
        want = ref(list(probs), sampling_rate=sr, audio_length_samples=length or None, **opts)
        got = timestamps_from_probs(probs, sr, audio_length_samples=length or None, **opts)
        assert got == want, (trial, opts)


def test_safetensors_conversion_matches_its_torch_model(silero, tmp_path, shared_data):
    """`silero_vad_16k.safetensors` (weights differ from the JIT's) against the same network
    built from torch.nn modules with silero's tinygrad-model layout."""
    import torch
    from safetensors.torch import load_file

    from mlx_audio_stack.convert import convert

    src = Path(silero.__file__).parent / "data" / "silero_vad_16k.safetensors"
    out = convert(src, tmp_path / "st")
    m = load_vad(out)
    assert m.sample_rates == [16000]
    w = load_file(str(src))
    nn = torch.nn

    stft = nn.Conv1d(1, 258, 256, stride=128, bias=False)
    convs = [
        nn.Conv1d(i, o, 3, stride=s, padding=1)
        for i, o, s in ((129, 128, 1), (128, 64, 2), (64, 64, 2), (64, 128, 1))
    ]
    cell, final = nn.LSTMCell(128, 128), nn.Conv1d(128, 1, 1)
    with torch.no_grad():
        stft.weight.copy_(w["stft_conv.weight"])
        for i, c in enumerate(convs):
            c.weight.copy_(w[f"conv{i + 1}.weight"])
            c.bias.copy_(w[f"conv{i + 1}.bias"])
        for p in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(cell, p).copy_(w[f"lstm_cell.{p}"])
        final.weight.copy_(w["final_conv.weight"])
        final.bias.copy_(w["final_conv.bias"])

        x = load_audio(shared_data / "ami_meeting_clips" / "trn00.wav", 16000)[: 16000 * 8]
        xp = torch.from_numpy(np.concatenate([np.zeros(64, np.float32), x]))
        state, ref = None, []
        for i in range(0, x.size // 512 * 512, 512):
            y = nn.functional.pad(xp[None, i : i + 576], (0, 64), mode="reflect")[:, None]
            y = stft(y)
            y = torch.sqrt(y[:, :129] ** 2 + y[:, 129:] ** 2)
            for c in convs:
                y = torch.relu(c(y))
            state = cell(y[..., 0], state)
            ref.append(torch.sigmoid(final(torch.relu(state[0])[..., None])).item())
    ours = speech_probs(m, x[: x.size // 512 * 512])
    np.testing.assert_allclose(ours, ref, atol=TOL)
