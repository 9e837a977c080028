"""MossFormer2 smoke tests (tiny random configs, no reference needed): shapes, bad input,
streaming order stability, converter detection/layouts, metrics, mixtures, CLI."""

from __future__ import annotations

import json
import os
import stat

import mlx.core as mx
import numpy as np
import pytest
import soundfile as sf
from mlx.utils import tree_flatten

from mlx_audio_stack.errors import AudioError, ConversionError, MasError, WeightsError
from mlx_audio_stack.evaluation.separation import (
    make_mixtures,
    si_sdr,
    si_sdr_improvement,
    si_sdr_pit,
)
from mlx_audio_stack.models.mossformer2 import (
    ModelArgs,
    MossFormer2,
    StreamingSeparator,
    best_permutation,
    load_model,
    separate,
)
from mlx_audio_stack.models.mossformer2.layers import depthwise_conv, mean_var
from mlx_audio_stack.weights_io import param_shapes, save_model_dir

TINY = dict(encoder_embedding_dim=32, mossformer_sequence_dim=32, num_mossformer_layer=1)


def _random_model(num_spks=2, sr=16000, seed=0, **kw) -> MossFormer2:
    mx.random.seed(seed)
    m = MossFormer2(ModelArgs(num_spks=num_spks, sampling_rate=sr, **{**TINY, **kw}))
    params = [
        (k, v) for k, v in tree_flatten(m.parameters()) if not k.endswith(("freqs", "inv_freq"))
    ]  # positions stay the reference's
    m.load_weights(
        [(k, mx.random.normal(v.shape) * 0.2 + (1.0 if v.ndim == 1 else 0.0)) for k, v in params],
        strict=False,
    )
    return m


def _save(model: MossFormer2, path):
    w = dict(tree_flatten(model.parameters()))
    cfg = {"model_type": "mossformer2", "args": model.args.to_dict()}
    return save_model_dir(path, w, cfg)


@pytest.mark.parametrize("spks", [2, 3])
def test_shapes_and_short_inputs(spks):
    m = _random_model(spks)
    for t in (16000, 160, 5):  # 1 s, 10 ms, shorter than one encoder frame
        y = m(mx.random.normal((1, t)) * 0.1)
        assert y.shape == (1, t, spks)
        assert np.isfinite(np.array(y)).all()
    silent = np.array(m(mx.zeros((1, 4000))))
    assert np.isfinite(silent).all()


def test_whamr_variant_differs():
    a = _random_model(2)
    b = MossFormer2(ModelArgs(num_spks=2, skip_mask_multiplication=True, **TINY))
    b.load_weights(tree_flatten(a.parameters()))
    x = mx.random.normal((1, 4000)) * 0.1
    assert not np.allclose(np.array(a(x)), np.array(b(x)))


def test_sanitize_twice_is_harmless():
    m = _random_model(2)
    expected = param_shapes(m)
    torch_like = {}
    for k, v in tree_flatten(m.parameters()):  # back to torch layouts
        if k == "dec.weight":
            v = v.transpose(2, 0, 1)
        elif v.ndim in (3, 4):
            v = v.transpose(0, v.ndim - 1, *range(1, v.ndim - 1))
        torch_like["module." + k] = v
    once = m.sanitize(torch_like)
    twice = m.sanitize(once)
    assert {k: v.shape for k, v in twice.items()} == {k: tuple(s) for k, s in expected.items()}
    for k, v in tree_flatten(m.parameters()):
        assert np.array_equal(np.array(twice[k]), np.array(v)), k


@pytest.mark.parametrize("groups,dilation", [(1, 1), (2, 2)])
def test_depthwise_conv_matches_grouped_conv(groups, dilation):
    c, k, t = 8, 7, 50
    x = mx.random.normal((1, t, c * groups))
    w = mx.random.normal((c, k, groups))
    pad = (k - 1) * dilation // 2
    ours = depthwise_conv(x, w, pad, pad, dilation)
    ref = mx.conv1d(x, w, padding=pad, dilation=dilation, groups=c)
    np.testing.assert_allclose(np.array(ours), np.array(ref), atol=1e-5)


def test_mean_var_accurate_on_large_input():
    rng = np.random.default_rng(0)
    x = np.abs(rng.standard_normal((1, 4000, 512))).astype(np.float32) * 0.03 + 0.02
    mean, var = mean_var(mx.array(x), (1, 2))
    x64 = x.astype(np.float64)
    assert abs(float(np.array(mean).ravel()[0]) / x64.mean() - 1) < 1e-6
    assert abs(float(np.array(var).ravel()[0]) / x64.var() - 1) < 1e-5


class _OracleModel:
    """Returns the true sources of whatever window it sees, in a random order each call."""

    def __init__(self, sources, sr=8000):
        self.sources, self.sample_rate, self.num_spks = sources, sr, sources.shape[0]
        self.mix = sources.sum(0)
        self.rng = np.random.default_rng(1)

    def __call__(self, x):
        x = np.array(x)[0]
        n = x.size  # windows are taken in order: locate by content
        for start in range(0, self.mix.size - n + 1):
            if np.array_equal(self.mix[start : start + n], x):
                break
        est = self.sources[:, start : start + n][self.rng.permutation(self.num_spks)]
        return mx.array(est.T[None])


def test_streaming_keeps_speaker_order():
    rng = np.random.default_rng(0)
    sr = 8000
    src = np.stack(
        [
            np.sin(np.arange(5 * sr) * f / sr * 2 * np.pi) * a
            for f, a in ((220, 0.3), (530, 0.2), (1250, 0.1))
        ]
    ).astype(np.float32)
    src += rng.standard_normal(src.shape).astype(np.float32) * 0.01
    model = _OracleModel(src, sr)
    st = StreamingSeparator(model, window_s=1.0, overlap_s=0.25)
    assert st.latency_s == pytest.approx(1.0)
    out = st.run(src.sum(0), block=777)
    assert out.shape == src.shape
    perm = best_permutation(src, out)
    np.testing.assert_allclose(out[list(perm)], src, atol=1e-5)  # one order for all windows


def test_best_permutation():
    a = np.random.default_rng(0).standard_normal((3, 100))
    assert best_permutation(a, a[[2, 0, 1]]) == (1, 2, 0)


def test_separate_bad_inputs(tmp_path):
    m = _random_model(2)
    x = (np.random.default_rng(0).standard_normal(8000) * 0.1).astype(np.float32)
    stereo = np.stack([x, x], axis=1)
    np.testing.assert_allclose(separate(stereo, m), separate(x, m), atol=1e-6)
    y = separate(x, m, input_sr=8000)  # resampled to 16 kHz: twice the samples
    assert y.shape == (2, 16000)
    bad = x.copy()
    bad[10] = np.nan
    with pytest.raises(AudioError, match="NaN"):
        separate(bad, m)
    with pytest.raises(MasError, match="separates 2 speakers"):
        separate(x, m, num_spks=3)
    assert separate(np.zeros(160, np.float32), m).shape == (2, 160)
    folder = _save(m, tmp_path / "m")
    with pytest.raises(WeightsError, match="separates 2 speakers"):
        load_model(folder, num_spks=3)


def test_chunked_path_runs_and_normalizes():
    m = _random_model(2)
    x = (np.random.default_rng(1).standard_normal(16000 * 3) * 0.1).astype(np.float32)
    y = separate(x, m, chunk_s=1.0, overlap_s=0.25, normalize=True)
    assert y.shape == (2, x.size)
    rms = np.sqrt(np.mean(y**2, axis=1))
    np.testing.assert_allclose(rms, np.sqrt(np.mean(x**2)), rtol=1e-4)


def _starkdmi_names(weights: dict) -> dict:
    """Our (reference) names -> starkdmi/mossformer_ss_mlx's, with its `model.` prefix."""
    import re

    out = {}
    for k, v in weights.items():
        if k.endswith("rotary_pos_emb.freqs"):
            continue  # not stored there
        k = re.sub(r"\.mdl\.0\.", ".norm.", k)
        k = re.sub(r"\.mdl\.1\.", ".linear.", k)
        k = re.sub(r"\.mdl\.3\.sequential\.1\.conv\.weight$", ".conv_module.weight", k)
        k = re.sub(r"(\.fsmn\.\d+)\.conv1\.0\.", r"\1.conv1.", k)
        k = re.sub(r"(\.fsmn\.\d+)\.conv1\.1\.", r"\1.prelu.", k)
        k = re.sub(r"\.conv\.conv(\d)\.", lambda m: f".conv.convs.{int(m.group(1)) - 1}.", k)
        k = re.sub(r"\.conv\.norm(\d)\.", lambda m: f".conv.norms.{int(m.group(1)) - 1}.", k)
        k = re.sub(r"\.conv\.prelu(\d)\.", lambda m: f".conv.prelus.{int(m.group(1)) - 1}.", k)
        k = re.sub(r"^mask_net\.(output|output_gate)\.0\.", r"mask_net.\1.", k)
        out["model." + k] = v
    return out


def test_convert_starkdmi_layout_and_detect(tmp_path):
    from mlx_audio_stack.convert import convert
    from mlx_audio_stack.convert import mossformer2 as conv

    m = _random_model(3, seed=3)
    src = tmp_path / "MossFormer2_SS_3SPK_8K_MLX"
    src.mkdir()
    mx.save_safetensors(
        str(src / "model_fp32.safetensors"), _starkdmi_names(dict(tree_flatten(m.parameters())))
    )
    assert conv.detect(src)
    out = convert(src, tmp_path / "out")
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["args"]["num_spks"] == 3 and cfg["args"]["sampling_rate"] == 8000
    assert cfg["args"]["skip_mask_multiplication"] is False
    m2 = load_model(out)
    x = mx.random.normal((1, 3000)) * 0.1
    np.testing.assert_array_equal(np.array(m2(x)), np.array(m(x)))
    # not ours: other safetensors, an empty folder, a non-checkpoint text file
    other = tmp_path / "other"
    other.mkdir()
    mx.save_safetensors(str(other / "model.safetensors"), {"encoder.weight": mx.zeros((2, 2))})
    assert not conv.detect(other)
    assert not conv.detect(tmp_path / "nothing")
    (tmp_path / "x.pt").write_bytes(b"not a zip")
    assert not conv.detect(tmp_path / "x.pt")
    with pytest.raises(ConversionError):
        convert(other, tmp_path / "o2", model="mossformer2")


def test_cli_separate_writes_sources(tmp_path):
    from mlx_audio_stack.cli import main

    m = _random_model(2)
    folder = _save(m, tmp_path / "m")
    x = (np.random.default_rng(0).standard_normal((8000, 2)) * 0.1).astype(np.float32)
    sf.write(str(tmp_path / "mix.wav"), x, 8000)  # stereo 8 kHz into a 16 kHz model
    rc = main(
        [
            "separate",
            str(tmp_path / "mix.wav"),
            "--model",
            str(folder),
            "--out",
            str(tmp_path / "src"),
        ]
    )
    assert rc == 0
    files = sorted(p.name for p in (tmp_path / "src").iterdir())
    assert files == ["spk1.wav", "spk2.wav"]
    y, sr = sf.read(str(tmp_path / "src" / "spk1.wav"))
    assert sr == 16000 and y.shape == (16000,)
    # longer than --chunk: streamed from disk in windows, same length out
    args = ["separate", str(tmp_path / "mix.wav"), "--model", str(folder)]
    rc = main(args + ["--out", str(tmp_path / "st"), "--chunk", "0.4", "--overlap", "0.1"])
    assert rc == 0
    y2, _ = sf.read(str(tmp_path / "st" / "spk2.wav"))
    assert y2.shape == (16000,) and np.isfinite(y2).all()
    assert not [p for p in (tmp_path / "st").iterdir() if p.name.startswith(".")]
    # both writers (whole and streamed) create the sources with the user's umask (issue 16)
    old = os.umask(0o027)
    try:
        assert main(args + ["--out", str(tmp_path / "um")]) == 0
        assert (
            main(args + ["--out", str(tmp_path / "um2"), "--chunk", "0.4", "--overlap", "0.1"]) == 0
        )
    finally:
        os.umask(old)
    for p in (*(tmp_path / "um").iterdir(), *(tmp_path / "um2").iterdir()):
        assert stat.S_IMODE(p.stat().st_mode) == 0o640, (p, oct(p.stat().st_mode))
    assert (
        main(
            [
                "separate",
                str(tmp_path / "mix.wav"),
                "--model",
                str(folder),
                "--out",
                str(tmp_path / "s2"),
                "--num-spks",
                "3",
            ]
        )
        == 1
    )


def test_metrics_known_answers():
    rng = np.random.default_rng(0)
    refs = rng.standard_normal((2, 8000))
    mix = refs.sum(0)
    assert si_sdr(refs[0] * 3.0, refs[0]) > 80  # scale-invariant
    sdr, perm = si_sdr_pit(refs[::-1] * 0.5, refs)
    assert perm == (1, 0) and (sdr > 80).all()
    r = si_sdr_improvement(np.stack([mix, mix]), refs, mix)
    assert abs(r["si_sdri"]) < 1e-9  # the mixture itself improves nothing
    noisy = refs + 0.1 * rng.standard_normal(refs.shape)
    assert si_sdr(noisy[0], refs[0]) == pytest.approx(20.0, abs=0.5)


def test_make_mixtures_reproducible(shared_data, tmp_path):
    a = make_mixtures(
        shared_data, tmp_path / "a", 2, 3, seconds=1.0, overlap=0.5, snr_db=5.0, sr=8000, seed=7
    )
    b = make_mixtures(
        shared_data, tmp_path / "b", 2, 3, seconds=1.0, overlap=0.5, snr_db=5.0, sr=8000, seed=7
    )
    assert a == b
    mix_a, _ = sf.read(str(tmp_path / "a" / "mix0000" / "mix.wav"))
    mix_b, _ = sf.read(str(tmp_path / "b" / "mix0000" / "mix.wav"))
    np.testing.assert_array_equal(mix_a, mix_b)
    assert a[0].offsets == [0, 4000, 8000] and len(set(a[0].speakers)) == 3
    assert mix_a.shape == (16000,)
