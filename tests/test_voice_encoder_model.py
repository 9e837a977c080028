"""Voice encoder tier 1: tiny random-config smoke tests, the LSTM against an independent
float64 NumPy LSTM (torch's equations), the CPU recurrence against the MLX one, the mel front
end against librosa, partial windows, streaming, the legacy torch reader, conversion, the
embedder interface and the CLI. No resemblyzer needed (tests/test_voice_encoder_parity.py)."""

from __future__ import annotations

import json
import os
import pickle
import warnings
import zipfile
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest
from conftest import require
from mlx.utils import tree_flatten

from mlx_audio_stack.errors import AudioError, UnsafePickleError, WeightsError
from mlx_audio_stack.kernels import lstm as cpu_lstm
from mlx_audio_stack.models.voice_encoder import (
    EmbeddingStream,
    VoiceEncoder,
    VoiceEncoderArgs,
    VoiceEncoderNet,
    load_model,
)
from mlx_audio_stack.models.voice_encoder.frontend import mel_frames, partial_slices
from mlx_audio_stack.models.voice_encoder.model import lstm_last_hidden_mlx
from mlx_audio_stack.weights_io import save_model_dir

TINY = VoiceEncoderArgs(mel_n_channels=40, model_hidden_size=24, model_embedding_size=16,
                        model_num_layers=2)  # fmt: skip
FULL = VoiceEncoderArgs()


def _random_state(args: VoiceEncoderArgs, seed: int = 0) -> dict[str, np.ndarray]:
    """A resemblyzer-layout state dict (GE2E loss parameters included) of random weights,
    torch's LSTM init U(-1/sqrt(n), 1/sqrt(n)) scaled 2x (a trained LSTM's range; much larger
    weights make the recurrence chaotic: 1e-7 apart inputs end 1e-3 apart)."""
    rng = np.random.default_rng(seed)
    state = {"similarity_weight": np.array([10.0], np.float32),
             "similarity_bias": np.array([-5.0], np.float32)}  # fmt: skip
    for k, v in tree_flatten(VoiceEncoderNet(args).parameters()):
        bound = 2 / np.sqrt(v.shape[-1] if v.ndim == 2 else args.model_hidden_size)
        state[k] = rng.uniform(-bound, bound, v.shape).astype(np.float32)
    return state


def _encoder(args: VoiceEncoderArgs = TINY, seed: int = 0) -> VoiceEncoder:
    model = VoiceEncoderNet(args)
    model.load_weights(
        [(k, mx.array(v)) for k, v in model.sanitize(_random_state(args, seed)).items()]
    )
    return VoiceEncoder(model)


def _speechlike(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000
    x = 0.3 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 3 * t))
    return (x + 0.05 * rng.standard_normal(n)).astype(np.float32)


def _numpy_lstm(state: dict, x: np.ndarray, layers: int) -> np.ndarray:
    """torch.nn.LSTM's equations in float64 (gates i, f, g, o; both biases) -> last h."""
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    h_all = x.astype(np.float64)
    for k in range(layers):
        w_ih, w_hh = state[f"lstm.weight_ih_l{k}"], state[f"lstm.weight_hh_l{k}"]
        b = state[f"lstm.bias_ih_l{k}"] + state[f"lstm.bias_hh_l{k}"]
        n = w_hh.shape[1]
        h = np.zeros((x.shape[0], n))
        c = np.zeros((x.shape[0], n))
        outs = []
        for t in range(x.shape[1]):
            z = h_all[:, t] @ w_ih.T + h @ w_hh.T + b
            i, f, g, o = np.split(z, 4, axis=1)
            c = sig(f) * c + sig(i) * np.tanh(g)
            h = sig(o) * np.tanh(c)
            outs.append(h)
        h_all = np.stack(outs, 1)
    return h


def test_forward_shapes_unit_rows_and_lstm_equations():
    state = _random_state(TINY)
    enc = _encoder(TINY)
    x = np.random.default_rng(1).uniform(0, 4, (3, 30, 40)).astype(np.float32)
    e = np.array(enc.model(mx.array(x)))
    assert e.shape == (3, 16)
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-6)
    ref = _numpy_lstm(state, x, 2)
    got = np.array(lstm_last_hidden_mlx(enc.model.lstm, mx.array(x)))
    np.testing.assert_allclose(got, ref, atol=2e-6)
    lin = np.maximum(ref @ state["linear.weight"].T.astype(np.float64) + state["linear.bias"], 0)
    np.testing.assert_allclose(e, lin / np.linalg.norm(lin, axis=1, keepdims=True), atol=2e-6)


def test_cpu_recurrence_matches_mlx_at_full_size():
    if not cpu_lstm.applies(mx.zeros((1,), mx.float32)):
        pytest.skip("the C recurrence needs Linux, a loaded BLAS and a C compiler (_lstm.c)")
    enc = _encoder(FULL, seed=2)
    for b in (1, 3, 11):  # up to 8 rows: products.c's; more: the BLAS's
        x = np.random.default_rng(b).uniform(0, 8, (b, 160, 40)).astype(np.float32)
        mlx_h = np.array(lstm_last_hidden_mlx(enc.model.lstm, mx.array(x)))
        cpu_h = cpu_lstm.last_hidden(cpu_lstm.weights_of(enc.model.lstm), x)
        np.testing.assert_allclose(cpu_h, mlx_h, atol=5e-6)
    # the cached CPU layout follows new weights
    before = cpu_lstm.weights_of(enc.model.lstm)
    enc.model.load_weights(
        [(k, mx.array(v)) for k, v in enc.model.sanitize(_random_state(FULL, 3)).items()]
    )
    assert cpu_lstm.weights_of(enc.model.lstm) is not before


def test_mel_matches_librosa_and_offsets():
    import librosa

    for n in (1, 399, 1600, 16000, 48123):
        w = _speechlike(n, seed=n)
        with warnings.catch_warnings():  # librosa warns that n_fft > n for the short ones
            warnings.simplefilter("ignore", UserWarning)
            ref = librosa.feature.melspectrogram(
                y=w, sr=16000, n_fft=400, hop_length=160, n_mels=40
            )
        got = mel_frames(w, FULL)
        assert got.shape == ref.T.shape
        np.testing.assert_allclose(got, ref.T, rtol=1e-5, atol=1e-7 * float(ref.max()))
    w = _speechlike(30000)
    full = mel_frames(w, FULL)
    off = 77 * 160 - 200  # a stream buffer starting at partial 1's first sample
    # equal up to the FFT's batching (pocketfft vectorises over several frames at once)
    got = mel_frames(w[off:], FULL, 77, 100, offset=off)
    np.testing.assert_allclose(got, full[77:177], rtol=1e-6, atol=1e-9)


def test_partial_slices_follow_resemblyzer_rules():
    assert partial_slices(48000, FULL) == [0, 77, 154]  # 3 s: last covers 91 % -> kept
    assert partial_slices(4000, FULL) == [0]  # shorter than one partial: one, padded
    assert partial_slices(25599, FULL) == [0]
    # 2.2 s: the second partial would cover (35200 - 12320) / 25600 = 89 % -> kept
    assert partial_slices(35200, FULL) == [0, 77]
    # 1.9 s: the second covers 71 % < 75 % -> dropped
    assert partial_slices(30400, FULL) == [0]
    assert partial_slices(48000, FULL, rate=2.0) == [0, 50, 100, 150]
    with pytest.raises(ValueError, match="rate"):
        partial_slices(48000, FULL, rate=0.5)  # 1.6 s partials every 2 s would leave gaps
    with pytest.raises(ValueError, match="min_coverage"):
        partial_slices(48000, FULL, min_coverage=0)


def test_embed_batches_equal_singles_and_bad_input(tmp_path):
    enc = _encoder()
    wavs = [_speechlike(n, seed=n) for n in (800, 20000, 48000, 70001)]
    batch = enc.embed(wavs)
    assert batch.shape == (4, 16) and batch.dtype == np.float32
    for w, e in zip(wavs, batch):
        np.testing.assert_allclose(enc.embed(w)[0], e, atol=1e-6)
    out, per = enc.embed(wavs, return_partials=True)
    assert [p.shape[0] for p in per] == [1, 1, 3, 5]
    m = per[2].mean(0)
    np.testing.assert_allclose(out[2], m / np.linalg.norm(m), atol=1e-6)
    x8k = _speechlike(16000)[::2].copy()
    assert enc.embed(x8k, input_sr=8000).shape == (1, 16)
    assert enc.embed([]).shape == (0, 16)
    with pytest.raises(AudioError, match="empty audio"):
        enc.embed([wavs[0], np.zeros(0, np.float32)])
    with pytest.raises(AudioError, match="no such file"):
        enc.embed(tmp_path / "missing.wav")
    with pytest.raises(AudioError, match="NaN"):
        enc.embed(np.full(1000, np.nan, np.float32))


def test_stream_equals_offline_partials_and_keeps_state_values():
    enc = _encoder(FULL, seed=4)
    w = _speechlike(16000 * 6, seed=5)
    _, per = enc.embed(w, return_partials=True)
    starts = partial_slices(w.size, FULL)
    stream = EmbeddingStream(enc, window_s=3.0)
    state = stream.initial_state()
    assert stream.step(state, np.zeros(0, np.float32))[1] is None
    first = None
    for lo in range(0, w.size, 8000):  # 0.5 s updates
        old = state
        state, e = stream.step(state, w[lo : lo + 8000])
        assert old.samples == lo  # the old state is a value: unchanged
        np.testing.assert_allclose(np.linalg.norm(e), 1.0, atol=1e-6)
        if first is None:  # 0.5 s in: embed_utterance of everything so far
            first = e
            np.testing.assert_allclose(e, enc.embed(w[:8000])[0], atol=1e-6)
    assert state.samples == w.size
    sel = [starts.index(s) for s in state.starts]
    assert state.starts and all(s * 160 >= w.size - 48000 for s in state.starts)
    m = per[0][sel].mean(0)
    np.testing.assert_allclose(e, m / np.linalg.norm(m), atol=2e-6)
    # other chunk sizes, same result
    state2 = stream.initial_state()
    for lo in range(0, w.size, 4999):
        state2, e2 = stream.step(state2, w[lo : lo + 4999])
    np.testing.assert_allclose(e2, e, atol=1e-6)
    assert state.audio.size < 2 * 25600  # only what the next partial needs is kept
    with pytest.raises(ValueError, match="window_s"):
        EmbeddingStream(enc, window_s=0)


# --- checkpoints: the legacy torch format, conversion, strict loading ---------------------------


def _legacy_bytes(obj_pickle: bytes, keys: list[str], storages: list[np.ndarray]) -> bytes:
    """A legacy torch.save file written by hand (magic, protocol, sys_info, object, keys,
    storages), as torch.serialization._legacy_save lays it out."""
    out = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2) + pickle.dumps(1001, protocol=2)
    out += pickle.dumps({"protocol_version": 1001, "little_endian": True}, protocol=2)
    out += obj_pickle + pickle.dumps(keys, protocol=2)
    for a in storages:
        out += np.int64(a.size).tobytes() + a.astype("<f4").tobytes()
    return out


def test_legacy_reader_refuses_code(tmp_path):
    from mlx_audio_stack.convert.torch_pickle import load_torch_checkpoint

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    p = tmp_path / "evil.pt"
    p.write_bytes(_legacy_bytes(pickle.dumps({"x": Evil()}, protocol=2), [], []))
    with pytest.raises(UnsafePickleError, match="system"):
        load_torch_checkpoint(p)


def _save_torch(state: dict, path: Path, legacy: bool) -> None:
    require("torch", "sh tools/install_refs.sh")
    import torch

    sd = {k: torch.from_numpy(v) for k, v in state.items()}
    ckpt = {"step": 7, "model_state": sd, "optimizer_state": {"state": {}, "param_groups": []}}
    torch.save(ckpt, path, _use_new_zipfile_serialization=not legacy)


@pytest.mark.parametrize("legacy", [True, False])
def test_convert_roundtrip_and_detection(tmp_path, legacy):
    from mlx_audio_stack.convert import convert, detect

    state = _random_state(TINY, seed=6)
    src = tmp_path / "pretrained.pt"
    _save_torch(state, src, legacy)
    assert zipfile.is_zipfile(src) != legacy
    assert detect(src).model_type == "voice_encoder"
    assert detect(tmp_path).model_type == "voice_encoder"  # the folder holding it
    out = convert(src, tmp_path / "mlx")
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model_type"] == "voice_encoder" and cfg["step"] == 7
    assert cfg["args"]["model_hidden_size"] == 24 and cfg["args"]["model_num_layers"] == 2
    enc = load_model(out)
    x = _speechlike(30000)
    np.testing.assert_allclose(enc.embed(x), _encoder(TINY, seed=6).embed(x), atol=1e-6)


def test_strict_loading_names_the_problem(tmp_path):
    w = {k: mx.array(v) for k, v in VoiceEncoderNet(TINY).sanitize(_random_state(TINY)).items()}
    cfg = {"model_type": "voice_encoder", "args": vars(TINY)}
    save_model_dir(tmp_path / "ok", w, cfg)
    assert load_model(tmp_path / "ok").dim == 16
    del w["lstm.bias_hh_l1"]
    save_model_dir(tmp_path / "bad", w, cfg)
    with pytest.raises(WeightsError, match=r"missing 1 keys: lstm\.bias_hh_l1"):
        load_model(tmp_path / "bad")
    save_model_dir(tmp_path / "other", w, {"model_type": "ecapa", "args": {}})
    with pytest.raises(WeightsError, match="expected 'voice_encoder'"):
        load_model(tmp_path / "other")


# --- one interface for both embedders; the CLI ------------------------------------------------


def _ecapa_folder(path: Path) -> Path:
    from mlx_audio_stack.models.ecapa import ECAPA_TDNN, EcapaArgs

    args = dict(input_size=80, channels=[32, 32, 32, 32, 96], kernel_sizes=[5, 3, 3, 3, 1],
                dilations=[1, 2, 3, 4, 1], attention_channels=16, lin_neurons=24,
                res2net_scale=4, se_channels=8)  # fmt: skip
    rng = np.random.default_rng(0)
    w = {}
    for k, v in tree_flatten(ECAPA_TDNN(EcapaArgs(**args)).parameters()):
        a = rng.standard_normal(v.shape).astype(np.float32) * 0.2
        w[k] = mx.array(np.abs(a) + 0.5 if k.endswith("running_var") else a)
    cfg = {"model_type": "ecapa", "args": args, "fbank": {"n_mels": 80}}
    return save_model_dir(path, w, cfg)


def test_load_embedder_and_default_embedder(tmp_path):
    from mlx_audio_stack.embedders import default_embedder, load_embedder

    root = tmp_path / "weights"
    with pytest.raises(WeightsError, match="mas weights get voice-encoder"):
        default_embedder(root)
    w = {k: mx.array(v) for k, v in VoiceEncoderNet(TINY).sanitize(_random_state(TINY)).items()}
    save_model_dir(root / "voice-encoder", w, {"model_type": "voice_encoder", "args": vars(TINY)})
    enc, name = default_embedder(root)
    assert name == "voice-encoder" and enc.name == "voice-encoder" and enc.dim == 16
    _ecapa_folder(root / "ecapa-voxceleb")
    enc, name = default_embedder(root)  # ECAPA first
    assert name == "ecapa-voxceleb" and enc.name == "ecapa" and enc.dim == 24
    x = _speechlike(16000)
    for e in (enc, load_embedder(root / "voice-encoder")):
        assert e.sample_rate == 16000 and e.min_samples >= 1 and 0 < e.threshold < 1
        assert e.embed([x, x]).shape == (2, e.dim)
    with pytest.raises(WeightsError, match="no config.json"):
        load_embedder(tmp_path)


def test_cli_embed_and_verify(tmp_path, capsys):
    import soundfile as sf

    from mlx_audio_stack.cli import main

    w = {k: mx.array(v) for k, v in VoiceEncoderNet(TINY).sanitize(_random_state(TINY)).items()}
    model = save_model_dir(tmp_path / "ve", w, {"model_type": "voice_encoder", "args": vars(TINY)})
    a, b = tmp_path / "a.wav", tmp_path / "b.flac"
    sf.write(a, _speechlike(24000), 16000, subtype="FLOAT")
    sf.write(b, _speechlike(44100, seed=9), 44100)
    assert main(["embed", str(a), str(b), "--model", str(model), "--quiet"]) == 0
    lines = [json.loads(s) for s in capsys.readouterr().out.splitlines()]
    enc = load_model(model)
    np.testing.assert_allclose(lines[0]["embedding"], enc.embed(a)[0], atol=1e-6)
    assert lines[1]["file"] == str(b) and len(lines[1]["embedding"]) == 16
    npy = tmp_path / "e.npy"
    assert main(["embed", str(a), "--model", str(model), "--format", "npy", "--out", str(npy)]) == 0
    assert np.load(npy).shape == (1, 16) and not list(tmp_path.glob(".e.npy*"))
    assert main(["verify", str(a), str(a), "--model", str(model), "--format", "json"]) == 0
    r = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert r["same_speaker"] and r["threshold"] == enc.threshold and r["model"] == "voice-encoder"
    assert main(["verify", str(a), str(b), "--model", str(model), "--cohort", str(a), str(b),
                 "--format", "json"]) == 0  # fmt: skip
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["normalized"]
    assert main(["embed", str(a), "--model", str(model), "--normalize"]) == 1
    assert "only ECAPA" in capsys.readouterr().err


def test_file_from_wheel_takes_one_member(tmp_path, monkeypatch):
    import subprocess

    from mlx_audio_stack import weights_get

    def fake_run(cmd, **_kw):  # what `pip download --no-deps` leaves in --dest
        assert "--no-deps" in cmd and "resemblyzer==0.1.4" in cmd
        dest = Path(cmd[cmd.index("--dest") + 1])
        with zipfile.ZipFile(dest / "Resemblyzer-0.1.4-py3-none-any.whl", "w") as zf:
            zf.writestr("resemblyzer/pretrained.pt", b"weights")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(subprocess, "run", fake_run)
    got = weights_get._file_from_wheel("resemblyzer==0.1.4", "resemblyzer/pretrained.pt", tmp_path)
    assert got.read_bytes() == b"weights"
    with pytest.raises(WeightsError, match="no wheel"):
        weights_get._file_from_wheel("resemblyzer==0.1.4", "resemblyzer/other.pt", tmp_path)
    assert weights_get.SOURCES["voice-encoder"].model == "voice_encoder"
