"""Whisper tier 2: the real weights (tiny.en, base; float32) against openai-whisper (PyTorch fp32).

The expensive comparisons (greedy tokens of every LibriSpeech utterance, beam 5, word
timestamps) read openai-whisper's side from tests/fixtures/whisper, made once by
tools/make_whisper_fixtures.py from openai-whisper itself; our side decodes every utterance
here and must equal it token for token. The fixture records the openai-whisper version, the
weights' source checksums and the audio's sha256, and a test fails when any differs from what
is installed (regenerate the fixture then). `pytest --live-refs` runs the same comparisons with
openai-whisper in this process instead (marker `live_ref`, deselected by default). The cheap
live comparisons (tokenizer, log-mel, logits of one utterance) run whenever openai-whisper is
installed.

Inputs: with the fixture our side decodes our own log-mel (the library's path end to end); the
live tests give both sides openai-whisper's log-mel (the decoders alone), as the fixture's
reference side had.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest
from _helpers import (
    check_fixture_audio,
    check_reference_version,
    librispeech,
    load_fixture,
    load_tool,
)

from mlx_audio_stack.audio import load_audio
from mlx_audio_stack.models.whisper import OFFICIAL_DIMS, ModelDimensions, load_model
from mlx_audio_stack.models.whisper.audio import log_mel_spectrogram
from mlx_audio_stack.models.whisper.decoding import DecodingOptions, DecodingTask
from mlx_audio_stack.models.whisper.transcribe import get_tokenizer, transcribe

LOGIT_TOL = 1e-3  # MLX logits equal openai-whisper's within 1e-3 absolute
MEL_TOL = 1e-4  # log-mel, absolute
PROB_TOL = 1e-3  # word probabilities, absolute
MODELS = ["whisper-tiny.en", "whisper-base"]
TOOL = load_tool("make_whisper_fixtures")


@pytest.fixture(scope="module")
def ref_fixture():
    return load_fixture("whisper")


@pytest.fixture(scope="module")
def models(real_weights):
    """Our float32 models and tokenizers, loaded once."""
    out = {}
    for name in MODELS:
        m = load_model(real_weights[name], "float32")
        out[name] = (m, get_tokenizer(m))
    return out


class _FromFixture:
    """openai-whisper's side read from the committed fixture; our side decodes our own mel."""

    def __init__(self, ref_fixture, shared: Path):
        self.meta, self.shared = ref_fixture[0], shared

    def mels(self, utts) -> list[np.ndarray]:
        return [_our_mel(p) for p, _ in utts]

    def _take(self, name: str, kind: str, utts) -> list[list[int]]:
        table = self.meta["models"][name][kind]
        keys = [str(p.relative_to(self.shared)) for p, _ in utts]
        assert sorted(keys) == sorted(table), f"fixture's {kind} utterances differ: regenerate it"
        return [table[k] for k in keys]

    def greedy(self, name, utts, mels):
        return self._take(name, "greedy", utts)

    def beam(self, name, utts, mels):
        return self._take(name, "beam", utts)

    def words(self, name, utts, audio):
        w = self.meta["models"][name]["words"]
        assert w["files"] == [str(p.relative_to(self.shared)) for p, _ in utts]
        return w["words"]


class _Live:
    """openai-whisper run in this process on its own mel; our side decodes the same mel."""

    def __init__(self, whisper, real_weights):
        from _refs import openai_whisper_from_converted

        self.whisper, self.weights, self.load = whisper, real_weights, openai_whisper_from_converted

    def mels(self, utts) -> list[np.ndarray]:
        return [TOOL.reference_mel(self.whisper, p) for p, _ in utts]

    def greedy(self, name, utts, mels):
        return TOOL.ref_decode_all(self.whisper, self.load(self.weights[name]), mels)

    def beam(self, name, utts, mels):
        ref = self.load(self.weights[name])
        return TOOL.ref_decode_all(self.whisper, ref, mels, beam_size=TOOL.BEAM_SIZE)

    def words(self, name, utts, audio):
        return TOOL.ref_words(self.whisper, self.load(self.weights[name]), audio)


@pytest.fixture(params=["fixture", pytest.param("live", marks=pytest.mark.live_ref)])
def reference(request, ref_fixture, shared_data, real_weights):
    if request.param == "fixture":
        return _FromFixture(ref_fixture, shared_data)
    return _Live(request.getfixturevalue("torch_whisper"), real_weights)


def _our_mel(path: Path) -> np.ndarray:
    """Our (3000, 80) log-mel of a file's first 30 s window (as transcribe's first window)."""
    return np.array(log_mel_spectrogram(load_audio(path), 80, padding=480000)[:3000])


def _decode_all(model, tk, mels, **options) -> list[list[int]]:
    out = []
    for i in range(0, len(mels), 16):
        batch = mx.array(np.stack(mels[i : i + 16]))
        task = DecodingTask(model, tk, DecodingOptions(language="en", **options))
        out += [list(r.tokens) for r in task.run(batch)]
    return out


# ---------------------------------------------------------------- the fixture is current
def test_fixture_made_with_installed_openai_whisper(ref_fixture):
    check_reference_version(ref_fixture[0], "openai-whisper")


def test_fixture_matches_weights_and_audio(ref_fixture, real_weights, shared_data):
    meta = ref_fixture[0]
    for name in MODELS:
        cfg = json.loads((real_weights[name] / "config.json").read_text())
        assert cfg["source_sha256"] == meta["models"][name]["source_sha256"], (
            f"{name}: weights differ from the fixture's: rerun {meta['made_by']}"
        )
    check_fixture_audio(meta, shared_data)


def test_official_dims_equal_the_real_checkpoints(real_weights):
    for size, name in (("tiny.en", "whisper-tiny.en"), ("base", "whisper-base")):
        cfg = json.loads((real_weights[name] / "config.json").read_text())
        assert ModelDimensions.from_dict(cfg["args"]) == OFFICIAL_DIMS[size]


# ---------------------------------------------------------------- cheap, always live
def test_tokenizer_matches_openai_whisper(torch_whisper, models):
    from whisper.tokenizer import LANGUAGES
    from whisper.tokenizer import get_tokenizer as ref_tokenizer

    from mlx_audio_stack.models.whisper.tokenizer import LANGUAGES as OURS

    assert tuple(LANGUAGES) == tuple(OURS)
    texts = [
        "Hello world, it's 3.14 o'clock!",
        " HE HOPED THERE WOULD BE STEW",
        "日本語のテキスト",
        "naïve café ½ ♪♪ «quoted»  \n  spaces_under",
        " -'s  ",
    ]
    for name, multi in (("whisper-tiny.en", False), ("whisper-base", True)):
        ours = models[name][1]
        ref = ref_tokenizer(multi, num_languages=ours.num_languages)
        for t in texts:
            assert ours.encode(t) == ref.encode(t), (name, t)
            assert ours.decode(ours.encode(t)) == t
        assert ours.non_speech_tokens == ref.non_speech_tokens
        for attr in ("eot", "sot", "no_speech", "no_timestamps", "timestamp_begin", "sot_prev"):
            assert getattr(ours, attr) == getattr(ref, attr), attr


def test_mel_matches_openai_whisper(torch_whisper, shared_data):
    import torch

    for f in TOOL.MEL_FILES:
        a = load_audio(TOOL.mel_file(f, shared_data))
        for n_mels in TOOL.MEL_BINS:
            want = torch_whisper.log_mel_spectrogram(torch.from_numpy(a), n_mels).numpy().T
            got = np.array(log_mel_spectrogram(a, n_mels))
            np.testing.assert_allclose(got, want, atol=MEL_TOL, rtol=0)


@pytest.mark.parametrize("name", MODELS)
def test_real_weights_logit_parity(torch_whisper, real_weights, models, shared_data, name):
    model, tk = models[name]
    from _refs import openai_whisper_from_converted

    ref = openai_whisper_from_converted(real_weights[name])
    mel = TOOL.reference_mel(torch_whisper, shared_data / TOOL.LOGIT_FILE)
    tokens = TOOL.logit_prompt(tk)
    want = TOOL.ref_logits(torch_whisper, ref, mel, tokens)
    got = np.array(model(mx.array(mel[None]), mx.array([tokens])))[0]
    assert np.abs(got - want).max() < LOGIT_TOL


# ---------------------------------------------------------------- against the fixture
def test_mel_matches_fixture(ref_fixture, shared_data):
    """Our log-mel's frame and bin means equal openai-whisper's (no reference needed)."""
    arrays = ref_fixture[1]
    for f in TOOL.MEL_FILES:
        a = load_audio(TOOL.mel_file(f, shared_data))
        for n in TOOL.MEL_BINS:
            got = TOOL.mel_summary(np.array(log_mel_spectrogram(a, n)))
            for k, v in got.items():
                np.testing.assert_allclose(v, arrays[f"mel/{f}/{n}/{k}"], atol=MEL_TOL, rtol=0)


@pytest.mark.parametrize("name", MODELS)
def test_logits_match_fixture(ref_fixture, models, shared_data, name):
    """On our own mel: openai-whisper's top-20 logits per position within 1e-3, no other token
    above its 20th by more than that, log-sum-exp and mean over the vocabulary within 1e-3."""
    meta, arrays = ref_fixture
    model, tk = models[name]
    tokens = meta["models"][name]["logits"]["tokens"]
    assert tokens == TOOL.logit_prompt(tk)
    mel = _our_mel(shared_data / TOOL.LOGIT_FILE)
    got = np.array(model(mx.array(mel[None]), mx.array([tokens])))[0].astype(np.float64)
    ids, vals = arrays[f"{name}/logits/topk_ids"], arrays[f"{name}/logits/topk_values"]
    np.testing.assert_allclose(np.take_along_axis(got, ids, -1), vals, atol=LOGIT_TOL, rtol=0)
    rest = got.copy()
    np.put_along_axis(rest, ids, -np.inf, -1)
    assert (rest.max(-1) <= vals[:, -1] + LOGIT_TOL).all()
    ours = TOOL.logit_summary(got)
    for k in ("logsumexp", "mean"):
        np.testing.assert_allclose(ours[k], arrays[f"{name}/logits/{k}"], atol=LOGIT_TOL, rtol=0)


# ---------------------------------------------------------------- every utterance
@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_greedy_tokens_identical_on_all_librispeech(reference, models, shared_data, name):
    utts = librispeech(shared_data)
    assert len(utts) >= 100
    utts = TOOL.greedy_utts(utts, name)  # base: every 3rd; tools/eval_whisper.py checks all
    mels = reference.mels(utts)
    model, tk = models[name]
    ours = _decode_all(model, tk, mels)
    want = reference.greedy(name, utts, mels)
    mismatched = [utts[i][0].name for i in range(len(utts)) if ours[i] != want[i]]
    assert not mismatched, f"{name}: greedy tokens differ on {mismatched}"


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_beam_search_equals_openai_whisper(reference, models, shared_data, name):
    utts = TOOL.beam_utts(librispeech(shared_data))  # every 10th; tools/eval_whisper.py: all
    mels = reference.mels(utts)
    model, tk = models[name]
    ours = _decode_all(model, tk, mels, beam_size=TOOL.BEAM_SIZE)
    assert ours == reference.beam(name, utts, mels)


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_word_timestamps_equal_openai_whisper(reference, models, shared_data, name):
    utts = librispeech(shared_data)[TOOL.WORDS_UTTS]
    audio = np.concatenate([load_audio(p) for p, _ in utts])  # one long-form recording
    got = TOOL.words_of(transcribe(audio, models[name][0], word_timestamps=True, language="en"))
    want = reference.words(name, utts, audio)
    assert [w[:3] for w in got] == [w[:3] for w in want]
    np.testing.assert_allclose([w[3] for w in got], [w[3] for w in want], atol=PROB_TOL)
