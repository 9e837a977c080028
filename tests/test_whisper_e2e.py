"""Whisper tier 3 (end to end): transcribe real speech with the real weights (tiny.en, base)
and check the text against the transcripts (WER), long-form seeking, streamed audio, the CLI's
formats, and bad input. The long real-speech tests are marked `slow` (they run in `make test`;
`-m "not slow"` leaves them out of a quick local run).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from _helpers import librispeech, wer

from mlx_audio_stack.audio import load_audio
from mlx_audio_stack.errors import AudioError
from mlx_audio_stack.models.whisper import load_model
from mlx_audio_stack.models.whisper.transcribe import transcribe
from mlx_audio_stack.paths import DEMO_CLIP


@pytest.mark.slow
def test_transcribe_demo_clip_end_to_end(real_weights):
    truth = (
        "HE HOPED THERE WOULD BE STEW FOR DINNER TURNIPS AND CARROTS AND BRUISED POTATOES "
        "AND FAT MUTTON PIECES TO BE LADLED OUT IN THICK PEPPERED FLOUR FATTENED SAUCE"
    )
    for name in real_weights:
        r = transcribe(DEMO_CLIP, real_weights[name])
        assert r["language"] == "en"
        assert wer(truth, r["text"]) < 0.15, r["text"]
        seg = r["segments"]
        assert seg and 0 <= seg[0]["start"] < seg[-1]["end"] <= 10.5
        assert all(k in seg[0] for k in ("avg_logprob", "no_speech_prob", "tokens"))


@pytest.mark.slow
def test_multilingual_detects_language_and_translates(real_weights, shared_data):
    model = load_model(real_weights["whisper-base"])
    r = transcribe(DEMO_CLIP, model)
    assert r["language"] == "en"
    t = transcribe(DEMO_CLIP, model, task="translate", beam_size=2)
    assert wer(r["text"], t["text"]) < 0.5  # English "translated" to English
    p = transcribe(
        DEMO_CLIP, model, initial_prompt="Turnips, carrots, mutton.", without_timestamps=True
    )
    assert "mutton" in p["text"].lower()


@pytest.mark.slow
def test_long_form_seeks_across_windows(real_weights, shared_data, tmp_path):
    utts = librispeech(shared_data)[:8]
    audio = np.concatenate([load_audio(p) for p, _ in utts])  # ~80 s: three windows or more
    r = transcribe(audio, real_weights["whisper-tiny.en"])
    truth = " ".join(t for _, t in utts)
    assert wer(truth, r["text"]) < 0.25
    starts = [s["start"] for s in r["segments"]]
    assert starts == sorted(starts) and r["segments"][-1]["end"] > 60


def test_bad_input(real_weights, tmp_path):
    model = load_model(real_weights["whisper-tiny.en"])
    sf.write(tmp_path / "empty.wav", np.zeros(0, np.float32), 16000)
    with pytest.raises(AudioError, match="empty"):
        transcribe(tmp_path / "empty.wav", model)
    sf.write(tmp_path / "one.wav", np.zeros(1, np.float32), 16000)
    assert transcribe(tmp_path / "one.wav", model)["text"] == ""
    sf.write(tmp_path / "silence.wav", np.zeros(16000 * 5, np.float32), 16000)
    assert transcribe(tmp_path / "silence.wav", model)["text"].strip() == ""
    (tmp_path / "notaudio.flac").write_bytes(b"PK\x03\x04 definitely not audio")
    with pytest.raises(AudioError, match="notaudio.flac"):
        transcribe(tmp_path / "notaudio.flac", model)
    data = DEMO_CLIP.read_bytes()
    (tmp_path / "cut.flac").write_bytes(data[: len(data) // 3])
    with pytest.raises(AudioError, match="cut.flac"):
        transcribe(tmp_path / "cut.flac", model)
    with pytest.raises(AudioError, match="NaN"):
        transcribe(np.array([0.0, np.nan] * 8000, np.float32), model)
    import librosa

    x = load_audio(DEMO_CLIP)
    up = librosa.resample(x, orig_sr=16000, target_sr=48000)
    sf.write(tmp_path / "st48.wav", np.stack([up, 0.5 * up], 1), 48000)
    assert "turnips" in transcribe(tmp_path / "st48.wav", model)["text"].lower()


def test_streamed_mel_equals_in_memory(monkeypatch, tmp_path, shared_data):
    from mlx_audio_stack.models.whisper import mel_source

    x = np.concatenate(
        [load_audio(p) for p in sorted((shared_data / "ami_meeting_clips").glob("trn0[0-3].wav"))]
    )  # 120 s
    sf.write(tmp_path / "long.flac", x, 16000)
    full = mel_source.MelSource.from_input(x, 80)
    monkeypatch.setattr(mel_source, "STREAM_SECONDS", 60)
    monkeypatch.setattr(mel_source, "CACHE_FRAMES", 1000)
    streamed = mel_source.MelSource.from_input(tmp_path / "long.flac", 80)
    assert streamed._cache is None and streamed.content_frames == full.content_frames
    for seek in (0, 2999, 6000, full.content_frames - 100):
        np.testing.assert_allclose(
            np.array(streamed.window(seek, 3000)), np.array(full.window(seek, 3000)), atol=2e-4
        )


@pytest.mark.slow
def test_cli_transcribe_formats_and_errors(real_weights, tmp_path, capsys):
    from mlx_audio_stack.cli import main

    m = str(real_weights["whisper-tiny.en"])
    assert (
        main(["transcribe", "--model", m, "--format", "json", "-o", str(tmp_path / "o.json")]) == 0
    )
    d = json.loads((tmp_path / "o.json").read_text())
    assert {"text", "segments", "language"} <= set(d) and "turnips" in d["text"].lower()
    assert main(["transcribe", "--model", m, "--format", "srt"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("1\n00:00:00,000 --> ") and "turnips" in out.lower()
    assert main(["transcribe", "--model", m, "--format", "json", "--word-timestamps"]) == 0
    words = json.loads(capsys.readouterr().out)["segments"][0]["words"]
    assert words[0]["word"].strip() == "He" and words[0]["start"] <= words[0]["end"]
    assert main(["transcribe", "--model", m, "--format", "vtt"]) == 0
    assert capsys.readouterr().out.startswith("WEBVTT\n\n00:00:00.000 --> ")
    (tmp_path / "x.wav").write_text("nope")
    assert main(["transcribe", "--model", m, str(tmp_path / "x.wav")]) == 1
    assert "x.wav: not a readable audio file" in capsys.readouterr().err
    assert main(["transcribe", "--model", str(tmp_path / "nothing")]) == 1
    err = capsys.readouterr().err  # an unknown folder: how to fill it
    assert "nothing: no converted model" in err and "mas convert" in err
    assert main(["transcribe", "--model", str(tmp_path / "whisper-small")]) == 1
    assert "mas weights get whisper-small" in capsys.readouterr().err  # a name `get` knows
