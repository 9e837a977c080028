"""tools/eval_enhancement.py (issue 18's noise question): the speech pick, the cut of a meeting
to whole utterances, and a run over a built 1-speaker meeting with real Whisper and Silero
weights. The separator is a tiny random MossFormer2 (a test double: its output is noise); the
harness must then refuse to name a winner, and an arm without weights must be reported as not
run with the command that fetches them."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import require

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))

SR = 16000


@pytest.fixture(scope="module")
def weights_root(offline_weights):
    vad = offline_weights("silero-vad")
    tiny = offline_weights("whisper-tiny.en")
    assert vad.parent == tiny.parent
    return vad.parent


@pytest.fixture(scope="module")
def one_speaker(shared_data, tmp_path_factory):
    require("pyroomacoustics", "sh tools/install_refs.sh (requirements/ref-pipeline.txt)")
    require("whisper", "sh tools/install_refs.sh (openai-whisper's text normaliser)")
    import make_meetings as mm

    spec = mm.MeetingSpec(1, 0.0, 5.0, seconds=14.0)
    out = tmp_path_factory.mktemp("enh")
    mm.build(spec, shared_data, out, seed=0, pool=mm.noise_pool(shared_data))
    return out


def test_pick_speech_is_the_source_vad_hears(weights_root, shared_data):
    import eval_enhancement as E
    import soundfile as sf

    from mlx_audio_stack.models.silero_vad.load import load_vad

    vad = load_vad(weights_root / "silero-vad")
    flac = sorted((shared_data / "librispeech" / "test-clean").rglob("*.flac"))[0]
    speech = sf.read(str(flac), dtype="float32")[0][: 4 * SR]
    noise = np.random.default_rng(0).normal(0, 0.05, speech.size).astype(np.float32)
    assert E.pick_speech(np.stack([speech, noise]), vad)[0] == 0
    k, scores = E.pick_speech(np.stack([noise, speech]), vad)
    assert k == 1 and scores[1] > 0.5 > scores[0]


def test_run_reports_no_winner_without_real_weights(one_speaker, weights_root, monkeypatch):
    import eval_enhancement as E
    from _pipeline_jobs import random_mossformer2

    def tiny_random(arm, random):  # test double for the full-size separator
        if arm == "whamr":
            return None, "no weights at weights/mossformer2-whamr-16k (`mas weights get ...`)"
        dims = dict(encoder_embedding_dim=32, mossformer_sequence_dim=32, num_mossformer_layer=1)
        return random_mossformer2(2, **dims), f"{E.WEIGHTS[arm]} at random weights (cost only)"

    monkeypatch.setattr(E, "load_separator", tiny_random)
    monkeypatch.setenv("MAS_WEIGHTS_DIR", str(weights_root))
    args = argparse.Namespace(
        meetings=one_speaker,
        names=["m1spk*"],
        arms=list(E.ARMS),
        random=True,
        seconds=9.0,
        whisper=str(weights_root / "whisper-tiny.en"),
    )
    res = E.run(args)
    (row,) = res["rows"]
    # cut at whole utterances: the true source's transcript matches its reference text
    assert row["audio_s"] <= 9.2
    assert set(row["arms"]) == {"none", "plain", "source"}
    assert row["arms"]["source"]["words"] >= 8
    assert row["arms"]["source"]["wer"] <= 0.35
    assert row["arms"]["plain"]["picked"] in (0, 1) and row["arms"]["plain"]["enhance_s"] > 0
    text = "\n".join(E.report(res))
    assert "Not decided here" in text and "Lowest pooled WER" not in text
    assert "mas weights get" in text and "random weights (cost only)" in text
