"""ECAPA-TDNN tier 1: tiny random-config smoke tests, bad input, hyperparams.yaml reading,
conversion errors, scoring and verification metrics with known answers (no SpeechBrain)."""

from __future__ import annotations

import importlib.util
import json
import warnings
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest
from _helpers import load_tool
from conftest import require
from mlx.utils import tree_flatten

from mlx_audio_stack.convert import convert, detect
from mlx_audio_stack.convert.ecapa import ecapa_config, read_hyperparams
from mlx_audio_stack.errors import AudioError, ConversionError, WeightsError
from mlx_audio_stack.evaluation.verification import compute_eer, compute_min_dcf, make_trials
from mlx_audio_stack.models.ecapa import ECAPA_TDNN, EcapaArgs, SpeakerEncoder, load_model
from mlx_audio_stack.models.ecapa.fbank import Fbank, FbankArgs
from mlx_audio_stack.models.ecapa.scoring import cosine_score, normalize_scores

REAL_HPARAMS = Path("/work/shared/reference/spkrec-ecapa-voxceleb/hyperparams.yaml")


TOOL = load_tool("make_ecapa_fixtures")
TINY = EcapaArgs(**TOOL.TINY_ARGS)


def _random_model(args: EcapaArgs = TINY, seed: int = 0) -> ECAPA_TDNN:
    rng = np.random.default_rng(seed)
    model = ECAPA_TDNN(args)
    w = {}
    for k, v in tree_flatten(model.parameters()):
        a = rng.standard_normal(v.shape).astype(np.float32) * 0.2
        if k.endswith("running_var"):
            a = rng.uniform(0.5, 2.0, v.shape).astype(np.float32)
        w[k] = mx.array(a)
    model.load_weights(list(w.items()))
    return model


def _encoder(seed: int = 0) -> SpeakerEncoder:
    return SpeakerEncoder(_random_model(seed=seed), FbankArgs(n_mels=80))


def _speechlike(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000
    x = np.sin(2 * np.pi * (150 + 50 * rng.random()) * t) * (1 + np.sin(2 * np.pi * 3 * t))
    return (0.1 * x + 0.01 * rng.standard_normal(n)).astype(np.float32)


# --- model -------------------------------------------------------------------------------------


def test_tiny_model_shapes_and_batch_equals_single():
    enc = _encoder()
    wavs = [_speechlike(n, i) for i, n in enumerate([4000, 16000, 9100, 23456])]
    single = np.stack([enc.embed(w)[0] for w in wavs])
    batched = enc.embed(wavs, batch_size=4)
    assert batched.shape == (4, TINY.lin_neurons)
    assert np.isfinite(batched).all()
    np.testing.assert_allclose(batched, single, atol=2e-5, rtol=1e-5)
    # the lengths matter: a zero-padded row without them is a different (SpeechBrain) result
    pad = np.zeros((1, 23456), np.float32)
    pad[0, :4000] = wavs[0]
    naive = np.array(enc.embed_batch(mx.array(pad)))[0]
    assert np.abs(naive - single[0]).max() > 1e-3


def test_speechbrain_batch_mode_full_lengths_equals_exact():
    enc = _encoder()
    w = np.stack([_speechlike(8000, s) for s in range(3)])
    a = np.array(enc.embed_batch(mx.array(w), wav_lens=[1.0, 1.0, 1.0]))
    b = np.array(enc.embed_batch(mx.array(w), n_samples=[8000] * 3))
    np.testing.assert_allclose(a, b, atol=1e-5)
    with pytest.raises(ValueError, match="not both"):
        enc.embed_batch(mx.array(w), n_samples=[8000] * 3, wav_lens=[1.0] * 3)


def test_sanitize_is_idempotent_and_transposes_torch_layout():
    model = _random_model()
    torch_like = {
        k: np.array(v).transpose(0, 2, 1) if v.ndim == 3 else np.array(v)
        for k, v in tree_flatten(model.parameters())
    }
    torch_like["blocks.0.norm.norm.num_batches_tracked"] = np.array(3)
    once = model.sanitize(torch_like)
    twice = model.sanitize(once)
    assert "blocks.0.norm.norm.num_batches_tracked" not in once
    for k, v in tree_flatten(model.parameters()):
        np.testing.assert_array_equal(once[k], np.array(v))
        np.testing.assert_array_equal(twice[k], np.array(v))


def test_fbank_frames_and_floor():
    fb = Fbank(FbankArgs(n_mels=80))
    x = mx.array(_speechlike(16000))
    f = np.array(fb(x[None]))
    assert f.shape == (1, 1 + 16000 // 160, 80)
    assert f.min() >= f.max() - 80.0 - 1e-4  # top_db floor
    silent = np.array(fb(mx.zeros((1, 1600))))
    np.testing.assert_allclose(silent, -100.0)  # 10 log10(amin)


# --- bad input ---------------------------------------------------------------------------------


def test_short_audio_is_refused_with_the_minimum():
    enc = _encoder()
    with pytest.raises(AudioError, match=r"shorter than the model's minimum of 640"):
        enc.embed(np.zeros(500, np.float32))
    assert np.isfinite(enc.embed(_speechlike(640))).all()


def test_silence_gives_a_finite_embedding():
    e = _encoder().embed(np.zeros(16000, np.float32))
    assert np.isfinite(e).all()


def test_nan_is_refused():
    x = _speechlike(16000)
    x[100] = np.nan
    with pytest.raises(AudioError, match="NaN"):
        _encoder().embed(x)


def test_8khz_input_is_resampled():
    from mlx_audio_stack.audio import resample

    enc = _encoder()
    x8 = _speechlike(8000)
    a = enc.embed(x8, input_sr=8000)
    b = enc.embed(resample(x8, 8000, 16000))
    np.testing.assert_allclose(a, b, atol=1e-6)
    assert np.abs(a - enc.embed(x8)).max() > 1e-3  # not silently read as 16 kHz


# --- hyperparams.yaml and conversion -----------------------------------------------------------


def test_embedded_hyperparams_equal_the_real_file():
    if not REAL_HPARAMS.exists():
        pytest.skip(f"{REAL_HPARAMS} not present (shared reference files)")
    real = [ln.rstrip() for ln in REAL_HPARAMS.read_text().splitlines()]
    assert real == [ln.rstrip() for ln in TOOL.HYPERPARAMS_YAML.splitlines()]


def test_real_hyperparams_are_read_without_executing(tmp_path):
    p = tmp_path / "hyperparams.yaml"
    p.write_text(TOOL.HYPERPARAMS_YAML)
    cfg = ecapa_config(p)
    assert cfg["args"] == {k: v for k, v in TOOL.FULL_ARGS.items()}
    assert cfg["fbank"] == {"n_mels": 80}
    assert cfg["mean_var_norm"] == {"norm_type": "sentence", "std_norm": False, "enabled": True}
    assert cfg["emb_norm_std"] is False
    hp = read_hyperparams(p)
    assert hp["pretrainer"].args["paths"]["embedding_model"] == (
        "speechbrain/spkrec-ecapa-voxceleb/embedding_model.ckpt"
    )


def test_other_models_hyperparams_are_refused(tmp_path):
    p = tmp_path / "hyperparams.yaml"
    p.write_text(
        TOOL.HYPERPARAMS_YAML.replace(
            "speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN\n    input_size: !ref <n_mels>\n"
            "    channels: [1024, 1024, 1024, 1024, 3072]\n    kernel_sizes: [5, 3, 3, 3, 1]\n"
            "    dilations: [1, 2, 3, 4, 1]\n    attention_channels: 128\n",
            "speechbrain.lobes.models.Xvector.Xvector\n    in_channels: !ref <n_mels>\n",
        )
    )
    with pytest.raises(ConversionError, match=r"Xvector\.Xvector, expected .*ECAPA_TDNN"):
        ecapa_config(p)
    (tmp_path / "embedding_model.ckpt").write_bytes(b"PK")
    from mlx_audio_stack.convert.ecapa import detect as ecapa_detect

    assert not ecapa_detect(tmp_path)
    p.write_text("asr_model: !new:speechbrain.lobes.models.transformer.TransformerASR\n")
    with pytest.raises(ConversionError, match="no `embedding_model"):
        ecapa_config(p)


def test_unsupported_knobs_are_named(tmp_path):
    p = tmp_path / "hyperparams.yaml"
    p.write_text(
        TOOL.HYPERPARAMS_YAML.replace(
            "    lin_neurons: 192\n",
            "    lin_neurons: 192\n    activation: !name:torch.nn.LeakyReLU\n",
        )
    )
    with pytest.raises(ConversionError, match="LeakyReLU"):
        ecapa_config(p)


def _torch_folder(tmp_path: Path, drop: str | None = None) -> Path:
    """A tiny checkpoint folder in SpeechBrain's layout, written by torch.save."""
    require("torch", "pip install -c requirements/constraints.txt torch==2.13.0")
    import torch

    model = _random_model()
    state = {}
    for k, v in tree_flatten(model.parameters()):
        a = np.array(v)
        state[k] = torch.from_numpy(a.transpose(0, 2, 1).copy() if a.ndim == 3 else a)
        if k.endswith("running_var"):
            state[k[: -len("running_var")] + "num_batches_tracked"] = torch.tensor(5)
    if drop:
        state = {k: v for k, v in state.items() if drop not in k}
    d = tmp_path / "src"
    d.mkdir()
    torch.save(state, d / "embedding_model.ckpt")
    torch.save(
        {"count": 3, "glob_mean": torch.arange(24.0), "glob_std": torch.ones(24)},
        d / "mean_var_norm_emb.ckpt",
    )
    (d / "hyperparams.yaml").write_text(TOOL.tiny_hyperparams())
    return d


def test_convert_roundtrip_and_cli_embed(tmp_path, capsys):
    from mlx_audio_stack.cli import main

    src = _torch_folder(tmp_path)
    assert detect(src).model_type == "ecapa"
    out = convert(src, tmp_path / "mlx")
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model_type"] == "ecapa" and cfg["args"]["res2net_scale"] == 4
    enc = load_model(out)
    ref = SpeakerEncoder(_random_model(), FbankArgs(n_mels=80))
    x = _speechlike(12000)
    np.testing.assert_allclose(enc.embed(x), ref.embed(x), atol=1e-6)
    np.testing.assert_allclose(
        enc.embed(x, normalize=True), ref.embed(x) - np.arange(24.0), atol=1e-5
    )
    import soundfile as sf

    wav = tmp_path / "a.wav"
    sf.write(wav, x, 16000, subtype="FLOAT")
    assert main(["embed", str(wav), "--model", str(out)]) == 0
    line = json.loads(capsys.readouterr().out.splitlines()[0])
    np.testing.assert_allclose(line["embedding"], enc.embed(x)[0], atol=1e-5)
    assert main(["verify", str(wav), str(wav), "--model", str(out), "--format", "json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["same_speaker"] and r["score"] == pytest.approx(1.0, abs=1e-5)


def test_missing_keys_are_listed(tmp_path):
    src = _torch_folder(tmp_path, drop="asp_bn")
    with pytest.raises(
        WeightsError,
        match=r"missing 4 keys: asp_bn\.norm\.bias, "
        r"asp_bn\.norm\.running_mean",
    ):
        convert(src, tmp_path / "mlx")


def test_load_refuses_other_model_type(tmp_path):
    from mlx_audio_stack.weights_io import save_model_dir

    save_model_dir(tmp_path / "m", {"x": mx.zeros(1)}, {"model_type": "silero_vad", "args": {}})
    with pytest.raises(WeightsError, match="expected 'ecapa'"):
        load_model(tmp_path / "m")


# --- scoring and metrics -----------------------------------------------------------------------


def test_cosine_and_cohort_normalization():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 5, 16))
    np.testing.assert_allclose(cosine_score(a, a), 1.0)
    np.testing.assert_allclose(cosine_score(a, -a), -1.0)
    cohort = rng.standard_normal((50, 16))
    s = cosine_score(a, b)
    z = normalize_scores(s, a, b, cohort, "z-norm")
    ce = (
        a
        / np.linalg.norm(a, axis=1, keepdims=True)
        @ (cohort / np.linalg.norm(cohort, axis=1, keepdims=True)).T
    )
    np.testing.assert_allclose(z, (s - ce.mean(1)) / ce.std(1))
    sn = normalize_scores(s, a, b, cohort, "s-norm")
    t = normalize_scores(s, a, b, cohort, "t-norm")
    np.testing.assert_allclose(sn, (z + t) / 2)
    top = normalize_scores(s, a, b, cohort, "s-norm", top_k=10)
    assert not np.allclose(top, sn)


def test_eer_and_min_dcf_known_answers():
    # perfectly separated
    assert compute_eer([0.9, 0.8], [0.1, 0.2])[0] == 0.0
    assert compute_min_dcf([0.9, 0.8], [0.1, 0.2])[0] == 0.0
    # 4 targets, 4 non-targets, one of each on the wrong side: EER 1/4
    eer, thr = compute_eer([0.9, 0.8, 0.7, 0.2], [0.1, 0.3, 0.4, 0.75])
    assert eer == pytest.approx(0.25)
    # identical distributions: EER 0.5
    rng = np.random.default_rng(0)
    x = rng.standard_normal(20000)
    assert compute_eer(x[:10000], x[10000:])[0] == pytest.approx(0.5, abs=0.02)
    # Gaussian targets N(2, 1) vs non-targets N(0, 1): EER = Phi(-1) = 0.1587
    t, n = rng.normal(2, 1, 50000), rng.normal(0, 1, 50000)
    assert compute_eer(t, n)[0] == pytest.approx(0.1587, abs=0.005)
    # minDCF never exceeds the trivial system (1.0)
    assert compute_min_dcf(t, n, p_target=0.01)[0] <= 1.0


def test_metrics_agree_with_speechbrain():
    require("speechbrain", "sh tools/install_refs.sh")
    sb = TOOL.import_speechbrain()
    import torch

    EER, minDCF = sb.EER, sb.minDCF  # noqa: N806

    rng = np.random.default_rng(1)
    t, n = rng.normal(1.5, 1, 3000), rng.normal(0, 1, 3000)
    eer_sb, _ = EER(torch.tensor(t), torch.tensor(n))
    dcf_sb, _ = minDCF(torch.tensor(t), torch.tensor(n), p_target=0.01)
    assert compute_eer(t, n)[0] == pytest.approx(float(eer_sb), abs=1e-3)
    # SpeechBrain returns the raw cost; ours is normalized by the trivial system's (0.01 here)
    assert compute_min_dcf(t, n, p_target=0.01)[0] == pytest.approx(float(dcf_sb) / 0.01, abs=2e-3)


def test_trials_are_reproducible():
    spk = ["a"] * 3 + ["b"] * 3 + ["c"]
    t1 = make_trials(spk, n_nontarget=8, seed=3, impostor_only=[False] * 6 + [True])
    t2 = make_trials(spk, n_nontarget=8, seed=3, impostor_only=[False] * 6 + [True])
    assert [(t.enroll, t.test, t.target) for t in t1] == [(t.enroll, t.test, t.target) for t in t2]
    targets = [t for t in t1 if t.target]
    assert len(targets) == 6 and all(spk[t.enroll] == spk[t.test] for t in targets)
    assert all(spk[t.enroll] != spk[t.test] for t in t1 if not t.target)


def test_torchaudio_stand_in_does_not_leak():
    require("speechbrain", "sh tools/install_refs.sh")
    import sys

    if importlib.util.find_spec("torchaudio") is not None:
        pytest.skip("a real torchaudio is installed: no stand-in is used")
    sb = TOOL.import_speechbrain()
    assert sb.ECAPA_TDNN.__name__ == "ECAPA_TDNN"
    # silero-vad's audio I/O and clearvoice probe for torchaudio: they must still find none
    assert "torchaudio" not in sys.modules
    assert importlib.util.find_spec("torchaudio") is None


def test_eval_harness_on_embeddings_with_known_answers():
    ev = load_tool("eval_verification")
    rng = np.random.default_rng(0)
    speakers = [s for s in "abcdef" for _ in range(5)] + ["x", "y", "z"]
    centers = {s: rng.standard_normal(32) for s in set(speakers)}
    # tight clusters around distinct centers: a perfect system
    emb = np.stack([centers[s] + 0.05 * rng.standard_normal(32) for s in speakers])
    imp = [False] * 30 + [True] * 3
    cohort = rng.standard_normal((20, 32))
    r = ev.evaluate(emb, speakers, imp, cohort, seed=0, n_nontarget=200)
    assert r["targets"] == 6 * 10 and r["trials"] == 260
    for scoring in ("cosine", "AS-norm"):
        assert r[scoring]["EER"] == 0.0 and r[scoring]["minDCF(0.01)"] == 0.0
    # embeddings unrelated to the speaker: chance level
    noise = rng.standard_normal((33, 32))
    r = ev.evaluate(noise, speakers, imp, cohort, seed=0, n_nontarget=200)
    assert 0.3 < r["cosine"]["EER"] < 0.7


# every knob off its default: a shortcut (cin != cout), an MFA kernel of 3, no global context
KNOBS = EcapaArgs(
    input_size=80,
    channels=[24, 40, 40, 40, 72],  # SpeechBrain needs the SE-Res2Net blocks equal
    kernel_sizes=[3, 5, 3, 3, 3],
    dilations=[1, 1, 2, 3, 2],
    attention_channels=12,
    res2net_scale=4,
    se_channels=6,
    global_context=False,
    lin_neurons=10,
)


@pytest.mark.parametrize("args", [TINY, KNOBS], ids=["tiny", "knobs"])
def test_cpu_kernels_equal_the_mlx_layers(args, monkeypatch):
    """The pass with ECAPA's CPU kernels (kernels/conv.py) against the model's MLX layers (their
    twins), in the three length modes: none, SpeechBrain's (mask only), exact (mask + frames)."""
    import sys

    from mlx_audio_stack.kernels import conv as kconv
    from mlx_audio_stack.kernels import library

    model = _random_model(args, seed=3)
    if library.turned_off():
        pytest.skip("MAS_GEMV=off: the MLX layers are the only path")
    if sys.platform.startswith("linux"):  # the C files compile here: the kernels must be on
        assert kconv.applies(mx.zeros((1,), mx.float32))
    if not kconv.applies(mx.zeros((1,), mx.float32)):
        pytest.skip("no kernels library on this platform: the MLX layers are the only path")
    rng = np.random.default_rng(0)
    frames = np.array([120, 75, 33])
    feats = mx.array(rng.standard_normal((3, 120, 80)).astype(np.float32))
    mask = mx.array(np.arange(120)[None] < frames[:, None])
    loud = feats * 1e6  # |SE logits| > 88: exp(-z) overflows float32 in a naive sigmoid
    for x, m, fr in [
        (feats, None, None),
        (feats, mask, None),
        (feats, mask, frames),
        (loud, mask, None),
    ]:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            got = np.array(model(x, m, fr))
        with monkeypatch.context() as mp:
            mp.setattr(kconv, "applies", lambda x: False)
            want = np.array(model(x, m, fr))
        assert got.shape == (3, args.lin_neurons)
        np.testing.assert_allclose(got, want, atol=2e-5 * np.abs(want).max(), rtol=1e-4)
    # and the modes differ, so each was tested for itself
    assert np.abs(np.array(model(feats, mask, frames)) - np.array(model(feats))).max() > 1e-3


def test_fast_exp_and_masked_softmax():
    from mlx_audio_stack.models.ecapa.model import fast_exp, softmax_time

    x = np.concatenate([np.linspace(-87, 88, 20001), np.random.default_rng(0).normal(0, 5, 999)])
    got = np.array(fast_exp(mx.array(x.astype(np.float32)))).astype(np.float64)
    want = np.exp(x.astype(np.float32).astype(np.float64))
    assert np.abs(got / want - 1).max() < 3e-7
    logits = np.random.default_rng(1).normal(0, 3, (2, 7, 5)).astype(np.float32)
    mask = np.array([[True] * 7, [True] * 4 + [False] * 3])
    sm = np.array(softmax_time(mx.array(logits), mx.array(mask)))
    e = np.exp(logits[1, :4] - logits[1, :4].max(0))
    np.testing.assert_allclose(sm[1, :4], e / e.sum(0), rtol=1e-5)
    assert (sm[1, 4:] == 0).all()
    np.testing.assert_allclose(sm.sum(1), 1.0, rtol=1e-6)


@pytest.mark.parametrize("masked", [False, True])
def test_softmax_time_equals_float64(masked):
    """The pooling's softmax over time (the twin of the pooling kernel's): float64's result,
    masked frames weight 0, the caller's array untouched."""
    from mlx_audio_stack.models.ecapa.model import softmax_time

    logits = np.random.default_rng(2).normal(0, 4, (2, 150, 512)).astype(np.float32)
    mask = np.ones((2, 150), bool)
    mask[1, 120:] = False
    m = mx.array(mask) if masked else None
    want = np.where(mask[:, :, None], logits, -np.inf) if masked else logits.astype(np.float64)
    want = np.exp(want - want.max(1, keepdims=True))
    want /= want.sum(1, keepdims=True)
    x = mx.array(logits)
    got = np.array(softmax_time(x, m))
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-12)
    assert np.array_equal(np.array(x), logits)


def test_batches_bound_count_and_padded_size():
    from mlx_audio_stack.models.ecapa.embed import _batches

    groups = _batches([5, 1, 3, 100, 2, 7, 8, 9, 10], batch_size=3, max_samples=30)
    assert [g.tolist() for g in groups] == [[1, 4, 2], [0, 5, 6], [7, 8], [3]]
