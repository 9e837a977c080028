"""Silero VAD, tier 1: random-weight smoke tests (no reference library, no data needed).

Streaming and the batched offline mode must agree, state must behave as a value, and bad input
must fail with a clear error."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

import mlx_audio_stack  # noqa: F401  (BLAS before mlx)
from mlx_audio_stack.convert.silero_vad import detect
from mlx_audio_stack.errors import AudioError, MasError, WeightsError
from mlx_audio_stack.evaluation.rttm import fold
from mlx_audio_stack.evaluation.vad import detection_error
from mlx_audio_stack.models.silero_vad import (
    ModelArgs,
    SileroVAD,
    VADEvents,
    VADStream,
    initial_state,
    model_from_weights,
    speech_probs,
    speech_timestamps,
    timestamps_from_probs,
    vad_step,
)
from mlx_audio_stack.models.silero_vad.output import FileSegments, to_json, to_rttm, to_txt
from mlx_audio_stack.weights_io import param_shapes


def random_weights(args: ModelArgs, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for k, shape in param_shapes(SileroVAD(args)).items():
        scale = 0.05 if "stft" in k else 0.3 / np.sqrt(np.prod(shape[1:]) if len(shape) > 1 else 1)
        out[k] = (rng.standard_normal(shape) * scale).astype(np.float32)
    return out


@pytest.fixture(scope="module")
def model():
    args = ModelArgs()
    return model_from_weights(random_weights(args), args)


def stream_probs(model, x: np.ndarray, sr: int) -> np.ndarray:
    s = VADStream(model, sr)
    n = s.chunk_size
    x = np.concatenate([x, np.zeros((-x.size) % n, np.float32)])
    return np.array([s(x[i : i + n]) for i in range(0, x.size, n)])


def noise(seconds: float, sr: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(int(seconds * sr)).astype(np.float32) * 0.1
    x[: x.size // 3] *= 0.01  # quiet start
    return x


@pytest.mark.parametrize("sr", [16000, 8000])
def test_offline_equals_streaming(model, sr):
    x = noise(3.3, sr)  # not a whole number of chunks: last one zero-padded
    off = speech_probs(model, x, sr)
    on = stream_probs(model, x, sr)
    assert off.shape == (int(np.ceil(x.size / (512 if sr == 16000 else 256))),)
    np.testing.assert_allclose(off, on, atol=1e-5)
    assert np.all((off > 0) & (off < 1))


def test_batched_streams_equal_single_streams(model):
    rng = np.random.default_rng(3)
    chunks = rng.standard_normal((5, 3, 512)).astype(np.float32) * 0.1  # (T, B, n)
    state = initial_state(model, 16000, batch_size=3)
    batched = []
    for t in range(5):
        p, state = vad_step(model, chunks[t], state)
        batched.append(p)
    batched = np.stack(batched)  # (T, B)
    for b in range(3):
        s = VADStream(model)
        np.testing.assert_allclose([s(chunks[t, b]) for t in range(5)], batched[:, b], atol=1e-6)


def test_state_is_a_value_and_reset_starts_over(model):
    x = noise(1.0, 16000)
    s = VADStream(model)
    first = [s(x[i : i + 512]) for i in range(0, 8 * 512, 512)]
    saved = s.state
    a = s(x[8 * 512 : 9 * 512])
    s.state = saved  # reusing an old state gives the same answer again
    assert s(x[8 * 512 : 9 * 512]) == pytest.approx(a, abs=1e-7)
    s.reset()
    again = [s(x[i : i + 512]) for i in range(0, 8 * 512, 512)]
    np.testing.assert_allclose(first, again, atol=1e-7)
    assert s.state.context.shape == (1, 64)


def test_bad_streaming_input(model):
    s = VADStream(model)
    with pytest.raises(AudioError, match="expected 512 samples"):
        s(np.zeros(480, np.float32))
    bad = np.zeros(512, np.float32)
    bad[7] = np.nan
    with pytest.raises(AudioError, match="NaN or inf"):
        s(bad)
    with pytest.raises(AudioError, match="44100 Hz is not supported"):
        VADStream(model, 44100)
    s8 = VADStream(model, 8000)
    with pytest.raises(AudioError, match="expected 256 samples"):
        s8(np.zeros(512, np.float32))
    state = initial_state(model, 16000, batch_size=2)
    with pytest.raises(AudioError, match="batch of 3"):
        vad_step(model, np.zeros((3, 512), np.float32), state)


def test_bad_offline_input(model):
    assert speech_probs(model, np.zeros(0, np.float32)).shape == (0,)
    assert speech_timestamps(np.zeros(0, np.float32), model) == []
    short = noise(0.01, 16000)  # 160 samples: one zero-padded chunk
    p = speech_probs(model, short)
    assert p.shape == (1,)
    np.testing.assert_allclose(p, stream_probs(model, short, 16000), atol=1e-6)
    x = noise(1.0, 16000)
    x[100] = np.inf
    with pytest.raises(AudioError, match="NaN or inf"):
        speech_probs(model, x)
    with pytest.raises(AudioError, match="NaN or inf"):
        speech_timestamps(x, model)
    fixed = speech_probs(model, x, nonfinite="zero")
    assert np.isfinite(fixed).all()
    with pytest.raises(AudioError, match="sample rate 22050"):
        speech_probs(model, x, 22050)
    with pytest.raises(AudioError, match="mono"):
        speech_probs(model, np.zeros((2, 3, 4), np.float32))


def test_other_rates_are_resampled_and_mapped_back(model):
    x16 = noise(2.0, 16000)
    segs = speech_timestamps(x16, model, threshold=0.0, min_speech_duration_ms=0)
    assert segs and segs[-1]["end"] == x16.size
    x44 = noise(2.0, 44100)
    segs = speech_timestamps(x44, model, sampling_rate=44100, threshold=0.0)
    assert segs[0]["start"] == 0 and segs[-1]["end"] == pytest.approx(x44.size, abs=3)
    segs8 = speech_timestamps(x16, model, threshold=0.0, model_sample_rate=8000)
    assert segs8[-1]["end"] == x16.size  # positions come back at the input rate
    with pytest.raises(AudioError, match="not a Silero VAD branch"):
        speech_timestamps(x16, model, model_sample_rate=22050)


def test_16k_only_weights():
    args = ModelArgs(sample_rates=[16000])
    m = model_from_weights(random_weights(args), args)
    with pytest.raises(AudioError, match="16000"):
        VADStream(m, 8000)
    x8 = noise(1.0, 8000)
    segs = speech_timestamps(x8, m, sampling_rate=8000, threshold=0.0, min_speech_duration_ms=0)
    assert segs[-1]["end"] == x8.size  # ran on the 16 kHz branch, mapped back to 8 kHz


def test_sanitize_renames_and_is_idempotent():
    args = ModelArgs(sample_rates=[16000])
    model = SileroVAD(args)
    w = random_weights(args)
    torch_layout = {  # safetensors names, conv weights (O, I, K)
        "stft_conv.weight": w["model.stft.forward_basis_buffer"].transpose(0, 2, 1),
        "conv1.weight": w["model.encoder.0.reparam_conv.weight"].transpose(0, 2, 1),
        "final_conv.weight": w["model.decoder.decoder.2.weight"].transpose(0, 2, 1),
        "lstm_cell.weight_hh": w["model.decoder.rnn.weight_hh"],
        "_model.encoder.3.reparam_conv.bias": w["model.encoder.3.reparam_conv.bias"],
        "_state": np.zeros(0, np.float32),
    }
    once = model.sanitize(torch_layout)
    twice = model.sanitize(once)
    assert set(once) == {
        "model.stft.forward_basis_buffer",
        "model.encoder.0.reparam_conv.weight",
        "model.decoder.decoder.2.weight",
        "model.decoder.rnn.weight_hh",
        "model.encoder.3.reparam_conv.bias",
    }
    for k, v in once.items():
        np.testing.assert_array_equal(v, w[k])
        np.testing.assert_array_equal(twice[k], v)


def test_missing_weights_are_named():
    args = ModelArgs()
    w = random_weights(args)
    del w["model_8k.decoder.rnn.bias_hh"]
    with pytest.raises(WeightsError, match="model_8k.decoder.rnn.bias_hh"):
        model_from_weights(w, args)


def test_detect_rejects_other_sources(tmp_path):
    from safetensors.numpy import save_file

    other = tmp_path / "model.safetensors"
    save_file({"encoder.conv1.weight": np.zeros((2, 2), np.float32)}, str(other))
    assert not detect(other)
    z = tmp_path / "ckpt.pt"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
    assert not detect(z)
    (tmp_path / "notes.jit").write_text("not a zip")
    assert not detect(tmp_path / "notes.jit")
    assert not detect(tmp_path)  # a folder without silero's files


def test_segment_options_and_formats():
    probs = np.array([0.1] * 5 + [0.9] * 20 + [0.1] * 10 + [0.8] * 3 + [0.0] * 10)
    segs = timestamps_from_probs(probs, 16000)
    assert len(segs) == 1  # the 3-chunk burst (96 ms) is shorter than 250 ms
    assert segs[0]["start"] == 5 * 512 - 480 and segs[0]["end"] == 25 * 512 + 480
    assert len(timestamps_from_probs(probs, 16000, min_speech_duration_ms=50)) == 2
    secs = timestamps_from_probs(probs, 16000, return_seconds=True, time_resolution=2)
    assert secs == [{"start": 0.13, "end": 0.83}]
    for bad in (dict(threshold=1.5), dict(speech_pad_ms=-1), dict(max_speech_duration_s=0)):
        with pytest.raises(MasError):
            timestamps_from_probs(probs, 16000, **bad)
    r = [FileSegments("a/trn00.wav", 16000, 3.0, [(0.5, 1.25)])]
    assert to_rttm(r) == "SPEAKER trn00 1 0.500 0.750 <NA> <NA> speech <NA> <NA>"
    assert to_txt(r) == "a/trn00.wav\t0.500\t1.250"
    assert json.loads(to_json(r))[0]["segments"] == [{"start": 0.5, "end": 1.25}]


def test_detection_error():
    ref = [(1.0, 3.0), (2.5, 4.0)]  # union 1..4 s
    err = detection_error(ref, [(1.0, 2.0), (5.0, 6.0)], (0.0, 10.0), collar=0.25)
    # scored: everything but 0.75-1.25 and 3.75-4.25; speech 1.25-3.75 = 2.5 s
    assert err.speech_s == pytest.approx(2.5)
    assert err.missed_s == pytest.approx(1.75)  # 2.0 .. 3.75
    assert err.false_alarm_s == pytest.approx(1.0)
    assert err.missed == pytest.approx(0.7) and err.false_alarm == pytest.approx(0.4)
    # a list of scored regions (rttm.read_uem) gives the same figures as the one region
    assert detection_error(ref, [(1.0, 2.0), (5.0, 6.0)], [(0.0, 10.0)], collar=0.25) == err
    assert fold("tr\u00f100") == "trn00"


def test_events_follow_probabilities(model):
    x = noise(2.0, 16000)
    ev = VADEvents(model, threshold=0.0)  # everything is speech: one start at 0
    out = [ev(x[i : i + 512]) for i in range(0, 20 * 512, 512)]
    assert out[0] == {"start": 0} and all(o is None for o in out[1:])


def test_fast_paths_equal_the_plain_network(model):
    """`prepare()` (FFT STFT, tail convs as matmuls) changes nothing but speed."""
    import mlx.core as mx
    from mlx.utils import tree_flatten

    from mlx_audio_stack.models.silero_vad import SileroVAD

    plain = SileroVAD(model.args)
    plain.load_weights(tree_flatten(model.parameters()))
    x = mx.array(noise(0.2, 16000)[: 3 * 576].reshape(3, 576))
    h = mx.zeros((3, 128))
    for sr, n in ((16000, 576), (8000, 288)):
        fast, slow = model.branch(sr), plain.branch(sr)
        assert fast.__dict__.get("_tail") is not None and slow.__dict__.get("_tail") is None
        a = fast(x[:, :n], h, h)[0]
        b = slow(x[:, :n], h, h)[0]
        np.testing.assert_allclose(np.array(a), np.array(b), atol=1e-6)
