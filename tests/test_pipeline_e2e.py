"""The whole pipeline on real speech with real Whisper tiny.en and Silero VAD weights.

Oracle stages (true sources, true speaker ids) isolate the orchestration; the run with the
real components checks what a user gets from `mas pipeline --demo`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _helpers import wer

from mlx_audio_stack.pipeline import run_pipeline
from mlx_audio_stack.pipeline.demo import demo_meeting
from mlx_audio_stack.pipeline.outputs import MANIFEST

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def weights(offline_weights):
    return {name: offline_weights(name) for name in ("whisper-tiny.en", "silero-vad")}


@pytest.fixture(scope="module")
def meeting():
    return demo_meeting()


def _single_speaker_run(audio, weights, out_dir=None):
    """Real tiny.en and Silero; no embedder or separator: everything is S1."""
    return run_pipeline(
        audio,
        out_dir,
        whisper=weights["whisper-tiny.en"],
        vad=weights["silero-vad"],
        embedder=False,
        separator=False,
    )


def test_demo_meeting_is_deterministic_and_as_described(meeting):
    again = demo_meeting()
    np.testing.assert_array_equal(meeting.mix, again.mix)
    assert meeting.sources.shape == (3, meeting.mix.size)
    active = np.abs(meeting.sources) > 1e-4
    # two overlaps: some samples have two speakers at once, none three
    both = active.sum(axis=0)
    assert 1.0 < (both == 2).sum() / 16000 < 4.0 and (both == 3).sum() == 0
    assert [t[0] for t in meeting.turns] == ["1089", "2412", "3331", "1089", "2412", "3331"]


def test_oracle_sources_and_ids_give_each_speaker_their_words(weights, meeting):
    """Orchestration alone: with true sources and speaker ids every stream must carry its own
    speaker's words (the remaining errors are Whisper's, on clean LibriSpeech)."""
    res = run_pipeline(
        meeting.mix,
        whisper=weights["whisper-tiny.en"],
        vad=weights["silero-vad"],
        oracle_sources=meeting.sources,
        oracle_speakers=meeting.turns,
    )
    assert set(res.transcripts) == set(meeting.texts)
    # single-speaker pieces come from the noisy mix (15 dB SNR), overlapped ones from the true
    # sources: tiny.en's own errors in that noise (~10 % over the meeting) remain
    for spk, ref in meeting.texts.items():
        assert wer(ref, res.transcripts[spk]) < 0.4, (spk, res.transcripts[spk])
    refs = " ".join(meeting.texts[s] for s in sorted(meeting.texts))
    hyps = " ".join(res.transcripts[s] for s in sorted(meeting.texts))
    assert wer(refs, hyps) < 0.2, res.transcripts
    # the overlaps were detected from the sources and separated
    ov = [e for e in res.events if e["type"] == "overlap"]
    assert ov and all(e["separated"] for e in ov)
    # final text never changes: each final word is emitted once, in time order per speaker
    finals = [e for e in res.events if e["type"] == "final"]
    for spk in meeting.texts:
        words = [w for e in finals if e["speaker"] == spk for w in e["words"]]
        assert " ".join(w["word"] for w in words) == res.transcripts[spk]
        starts = [w["start"] for w in words]
        assert starts == sorted(starts)
    assert all(e["emitted_at"] >= e["end"] - 1e-6 for e in finals)


def test_live_stdin_gives_the_same_finals_as_the_file_run(weights, tmp_path):
    """`mas pipeline -` over raw PCM equals the file run on the same samples."""
    import soundfile as sf

    from mlx_audio_stack.paths import DEMO_CLIP

    x, sr = sf.read(DEMO_CLIP, dtype="int16")
    assert sr == 16000
    file_res = _single_speaker_run(x.astype(np.float32) / 32768.0, weights)
    env = dict(os.environ, MAS_WEIGHTS_DIR=str(tmp_path))
    cmd = [sys.executable, "-m", "mlx_audio_stack", "pipeline", "-", "--quiet"]
    cmd += ["--model", str(weights["whisper-tiny.en"]), "--vad", str(weights["silero-vad"])]
    cmd += ["--embedder", "none", "--separator", "none", "--out", str(tmp_path / "live")]
    proc = subprocess.run(cmd, input=x.tobytes(), capture_output=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr.decode()
    events = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    live_finals = [e["text"] for e in events if e["type"] == "final"]
    file_finals = [e["text"] for e in file_res.events if e["type"] == "final"]
    assert live_finals == file_finals and live_finals
    assert (
        wer(
            "HE HOPED THERE WOULD BE STEW FOR DINNER TURNIPS AND CARROTS AND BRUISED POTATOES AND "
            "FAT MUTTON PIECES TO BE LADLED OUT IN THICK PEPPERED FLOUR FATTENED SAUCE",
            " ".join(live_finals),
        )
        < 0.2
    )
    out = tmp_path / "live"
    for f in ("events.jsonl", "speakers/S1.txt", "stdin.rttm", "stdin.srt", "stdin.vtt"):
        assert (out / f).stat().st_size > 0, f
    assert not [p for p in out.rglob(".*") if p.is_file() and p.name != MANIFEST]  # no temps


def test_a_spooled_run_gives_what_the_in_memory_run_gives(weights, tmp_path):
    """With an output folder the events are spooled to disk as they are decided (memory does
    not grow with the input); the run's result and events.jsonl must be what the in-memory run
    keeps. The clip is longer than the audio a run holds (KEEP_S), so the detector frames of
    dropped audio are dropped too, and the result must still count every frame."""
    from mlx_audio_stack.paths import DEMO_CLIP
    from mlx_audio_stack.pipeline.driver import KEEP_S
    from mlx_audio_stack.pipeline.record import EventRecord

    mem = _single_speaker_run(DEMO_CLIP, weights)
    assert mem.stats["audio_s"] > KEEP_S + 2
    spooled = _single_speaker_run(DEMO_CLIP, weights, tmp_path / "o")
    assert isinstance(mem.events, list) and isinstance(spooled.events, EventRecord)
    assert list(spooled.events) == mem.events and any(e["type"] == "final" for e in mem.events)
    assert spooled.words == mem.words and spooled.latency == mem.latency and mem.words
    assert spooled.transcripts == mem.transcripts
    np.testing.assert_array_equal(spooled.overlap_frames, mem.overlap_frames)
    assert mem.overlap_frames.size >= mem.stats["audio_s"] / mem.frame_s - 2
    lines = (tmp_path / "o" / "events.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(x) for x in lines] == mem.events
    assert not [p for p in (tmp_path / "o").rglob(".*") if p.name != MANIFEST]  # no spool/temp
    from mlx_audio_stack.pipeline.outputs import write_outputs

    write_outputs(mem, tmp_path / "m")  # the in-memory events written at the end: same file
    assert (tmp_path / "m" / "events.jsonl").read_bytes() == (
        tmp_path / "o" / "events.jsonl"
    ).read_bytes()


def test_silence_gives_no_words_and_complete_outputs(weights, tmp_path):
    res = _single_speaker_run(np.zeros(16000 * 5, np.float32), weights, tmp_path / "o")
    assert res.transcripts == {} and res.words == []
    assert (tmp_path / "o" / "report.md").exists()
    assert (tmp_path / "o" / "meeting.rttm").read_text() == ""


def test_bad_inputs_fail_clearly(weights, tmp_path):
    from mlx_audio_stack.cli import main

    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF1234WAVEjunk")
    assert main(["pipeline", str(bad), "--model", str(weights["whisper-tiny.en"])]) == 1
    assert main(["pipeline", "--demo", str(bad)]) == 1  # two inputs
    assert main(["pipeline", str(Path(bad).with_name("missing.wav"))]) == 1


def test_one_word_at_8khz_in_stereo(weights, shared_data, tmp_path):
    """An FSDD digit (8 kHz, one word), written as a stereo file: resampled, mixed down."""
    import soundfile as sf

    x, sr = sf.read(shared_data / "fsdd" / "recordings" / "7_jackson_0.wav", dtype="float32")
    assert sr == 8000
    stereo = tmp_path / "seven.wav"
    pad = np.zeros(4000, np.float32)
    mono = np.concatenate([pad, x, pad])
    sf.write(stereo, np.stack([mono, 0.5 * mono], axis=1), sr)
    res = _single_speaker_run(stereo, weights, tmp_path / "o")
    assert list(res.transcripts) == ["S1"]
    assert "seven" in res.transcripts["S1"].lower() or "7" in res.transcripts["S1"]
    assert (tmp_path / "o" / "seven.srt").read_text().count("[S1]") == 1


def test_music_and_a_truncated_file(weights, tmp_path, capsys):
    """Music-like tones (no speech): complete outputs, no invented speakers. A WAV cut short
    mid-data: one clear error line, exit 1, no outputs."""
    import soundfile as sf

    from mlx_audio_stack.cli import main

    t = np.arange(16000 * 6) / 16000
    notes = [261.6, 329.6, 392.0, 523.3]  # a C major arpeggio, 1.5 s a note, with harmonics
    f = np.repeat(notes, 16000 * 6 // 4 // 1)[: t.size]
    music = sum(0.1 / k * np.sin(2 * np.pi * k * f * t) for k in (1, 2, 3)).astype(np.float32)
    res = _single_speaker_run(music, weights, tmp_path / "m")
    assert len(res.transcripts) <= 1
    assert (tmp_path / "m" / "report.md").exists()

    wav = tmp_path / "cut.wav"
    sf.write(wav, music, 16000, subtype="PCM_16")
    data = wav.read_bytes()
    wav.write_bytes(data[: len(data) // 2])
    out = tmp_path / "cut-out"
    capsys.readouterr()  # the run above's notes
    assert main(["pipeline", str(wav), "--out", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cut.wav" in err[0] and "truncated" in err[0], err
    assert not out.exists()


def test_a_sudden_fourth_voice_with_max_speakers_3(weights, offline_weights, shared_data, tmp_path):
    """Three people talk in turn, then a fourth voice starts (LibriSpeech 3080 F, 2033 M,
    533 F, then 1688 M): with `--max-speakers 3` the run keeps at most three ids, the fourth
    voice's words are not dropped (they go to an existing id), and every output is complete.
    Real tiny.en, Silero and voice-encoder weights."""
    import csv

    from mlx_audio_stack.audio import load_audio
    from mlx_audio_stack.pipeline import PipelineConfig

    with open(shared_data / "MANIFEST.tsv", newline="", encoding="utf-8") as f:
        rows = {r["utterance_id"]: r for r in csv.DictReader(f, delimiter="\t")}
    order = ["3080-5032-0000", "2033-164914-0001", "533-1066-0001", "3080-5032-0001"]
    order += ["2033-164914-0002", "1688-142285-0002", "1688-142285-0003"]  # the fourth voice
    gap = np.zeros(16000, np.float32)
    parts, refs, t = [], [], 0.0
    for u in order:
        x = load_audio(shared_data / rows[u]["relpath"], 16000)
        parts += [x, gap]
        refs.append((u.split("-")[0], t, t + x.size / 16000, rows[u]["transcript"]))
        t += (x.size + gap.size) / 16000
    audio = np.concatenate(parts)
    res = run_pipeline(
        audio,
        tmp_path / "o",
        whisper=weights["whisper-tiny.en"],
        vad=weights["silero-vad"],
        embedder=offline_weights("voice-encoder"),
        separator=False,
        config=PipelineConfig(max_speakers=3),
    )
    assert 1 <= len(res.transcripts) <= 3 and set(res.transcripts) <= {"S1", "S2", "S3"}
    assert {e["speaker"] for e in res.events if e["type"] == "speaker"} == set(res.transcripts)
    # every voice's words are in the transcript, the fourth's too (whoever they went to)
    for spk, a, b, text in refs:
        heard = " ".join(w["word"] for w in res.words if a - 0.5 <= w["start"] < b + 0.5)
        assert wer(text, heard) < 0.35, (spk, text, heard)
    out = tmp_path / "o"
    for f in ("events.jsonl", "meeting.rttm", "meeting.srt", "meeting.vtt", "report.md"):
        assert (out / f).stat().st_size > 0, f
    assert sorted(p.stem for p in (out / "speakers").iterdir()) == sorted(res.transcripts)
    assert not [p for p in out.rglob(".*") if p.name != MANIFEST]


def test_a_pause_keeps_the_speakers_buffer_whole(weights, shared_data):
    """LibriSpeech 1688-142285-0003 has a pause after "himself": its next piece is still being
    cut when the speaker has been silent for IDLE_FINAL_S. That must not finalize the speaker
    (which empties the buffer): decoded alone, the second piece came out as "But, rather than
    anything else he said" instead of "better than ..."."""
    path = shared_data / "librispeech/test-other/1688/142285/1688-142285-0003.flac"
    res = _single_speaker_run(path, weights)
    text = " ".join(w["word"] for w in res.words).lower()
    assert "better than anything" in text, text
    finals = [e for e in res.events if e["type"] == "final"]
    assert len(finals) == 1, [e["text"] for e in finals]  # one buffer, committed once


def _known_overlap():
    """Test double of the overlap detector that knows the answer: two speakers from 1.0 to
    1.6 s, one elsewhere in the first 4 s."""
    from mlx_audio_stack.pipeline.config import FRAME_S
    from mlx_audio_stack.pipeline.stages import OracleOverlap

    t = (np.arange(int(4.0 / FRAME_S)) + 0.5) * FRAME_S
    counts = np.where((t > 1.0) & (t < 1.6), 2, 1)
    return OracleOverlap.from_counts(counts, name="test double: two speakers in 1.0-1.6 s")


def _known_overlap_run(weights, separator, embedder=False):
    """The first 4 s of the demo clip, oracle VAD 0.2-3.8 s (pieces 0.2-2.2 and 2.2-3.8 s),
    the known-overlap detector, no embedder (everything is S1) unless one is given."""
    import soundfile as sf

    from mlx_audio_stack.paths import DEMO_CLIP
    from mlx_audio_stack.pipeline import Pipeline

    audio, sr = sf.read(str(DEMO_CLIP), dtype="float32")
    p = Pipeline(
        whisper=weights["whisper-tiny.en"],
        oracle_vad=[(0.2, 3.8)],
        embedder=embedder,
        separator=separator,
        overlap=_known_overlap(),
    )
    events = p.push(audio[: 4 * sr]) + p.flush()
    return events, p.result()


def test_without_a_separator_overlap_events_mark_the_overlapped_run_only(weights):
    """No separation weights: a piece with an overlapped run inside stays whole and goes to one
    speaker, and the overlap event spans that run, not the whole piece (it claimed the whole
    piece, up to 2 s, before)."""
    events, res = _known_overlap_run(weights, separator=False)
    ov = [e for e in events if e["type"] == "overlap"]
    assert len(ov) == 1, ov
    assert ov[0]["start"] == pytest.approx(1.0, abs=0.05)
    assert ov[0]["end"] == pytest.approx(1.6, abs=0.05)
    assert ov[0]["speakers"] == ["S1"] and not ov[0]["separated"] and ov[0]["count"] == 2
    # the piece itself was not cut: its words all went to S1's stream
    assert set(res.transcripts) == {"S1"}


class Copies:
    """Test double of the separator: the mixture itself at the given gains, one per source
    (each holds speech, so each passes the source checks)."""

    name = "test double: scaled copies of the mixture"

    def __init__(self, gains):
        self.gains, self.calls, self.counts = gains, 0, []

    def __call__(self, audio, start, count):
        self.calls += 1
        self.counts.append(count)
        return np.stack([g * audio for g in self.gains]).astype(np.float32)


def test_without_a_second_id_the_separator_is_not_used(weights):
    """No embedder (everything is S1): a separated window's second source had no id and its
    words were dropped. Separation is off instead, said once, and the piece stays whole."""
    sep = Copies([1.0, 0.7])
    events, res = _known_overlap_run(weights, separator=sep)
    assert sep.calls == 0
    assert any("separation off: with no speaker embedder" in n for n in res.notes)
    _, plain = _known_overlap_run(weights, separator=False)
    assert res.transcripts == plain.transcripts and res.transcripts["S1"]
    # true sources without true ids or an embedder: the same (the other sources were dropped)
    from mlx_audio_stack.pipeline import Pipeline

    p = Pipeline(
        whisper=weights["whisper-tiny.en"],
        vad=weights["silero-vad"],
        embedder=False,
        oracle_sources=np.zeros((2, 16000), np.float32),
    )
    assert p.separator is None and p.components["separation"] == "none"


def test_more_sources_than_max_speakers_allows_keep_the_loudest(weights, offline_weights):
    """A 3-source separator with --max-speakers 2: two ids can take sources, so the two
    loudest are kept (the order the separator gave them in decided it before)."""
    from mlx_audio_stack.pipeline.config import PipelineConfig
    from mlx_audio_stack.pipeline.driver import Pipeline

    routed = []
    real_route = Pipeline._route

    def spy(self, sid, audio, t0, source):
        if source == "separated":
            routed.append((sid, round(float(np.abs(audio).max()), 3)))
        return real_route(self, sid, audio, t0, source)

    import soundfile as sf

    from mlx_audio_stack.paths import DEMO_CLIP

    audio, sr = sf.read(str(DEMO_CLIP), dtype="float32")
    gains = [0.3, 1.0, 0.6]
    p = Pipeline(
        whisper=weights["whisper-tiny.en"],
        oracle_vad=[(0.2, 3.8)],
        embedder=offline_weights("voice-encoder"),
        separator=(sep := Copies(gains)),
        overlap=_known_overlap(),
        config=PipelineConfig(max_speakers=2),
    )
    p._route = spy.__get__(p)
    p.push(audio[: 4 * sr])
    p.flush()
    run = audio[int(1.0 * sr) : int(1.6 * sr)]
    peaks = sorted(peak for _, peak in routed)
    assert len(routed) == 2 and len({sid for sid, _ in routed}) == 2
    assert sep.counts == [2]  # the separator is told how many voices the detector counted
    loud = float(np.abs(run).max())
    assert peaks == pytest.approx([0.6 * loud, 1.0 * loud], rel=0.05)


def test_a_separator_that_hears_no_one_loses_no_words(weights, offline_weights):
    """A separator whose sources hold no speech (silence here; noise from random weights)
    where the VAD heard speech: the overlapped run goes to its speaker from the mixture, as
    without a separator, instead of being dropped."""
    from mlx_audio_stack.pipeline.config import SAMPLE_RATE

    calls = []

    class Silent:
        name = "test double: silent sources"

        def __call__(self, audio, start, count):
            calls.append((start / SAMPLE_RATE, audio.size / SAMPLE_RATE))
            return np.zeros((2, audio.size), np.float32)

    voice = offline_weights("voice-encoder")  # separation needs a second id to give
    events, res = _known_overlap_run(weights, separator=Silent(), embedder=voice)
    assert len(calls) == 1 and calls[0][0] == pytest.approx(0.5, abs=0.05)  # the run - 0.5 s
    ov = [e for e in events if e["type"] == "overlap"]
    assert len(ov) == 1 and not ov[0]["separated"] and ov[0]["speakers"] == ["S1"]
    assert ov[0]["start"] == pytest.approx(1.0, abs=0.05)
    # every part of the first piece reached S1: the same words as without a separator
    _, plain = _known_overlap_run(weights, separator=False, embedder=voice)
    assert (
        set(res.transcripts) == {"S1"}
        and res.transcripts["S1"]
        and wer(plain.transcripts["S1"], res.transcripts["S1"]) < 0.2
    )


def test_the_pipeline_runs_with_ecapa_in_the_real_layout(weights, meeting):
    """ECAPA is the default embedder whenever weights/ecapa-voxceleb exists (hub only, so not
    here): the pipeline must run with it. Random weights in the real layout (SpeechBrain's
    spkrec-ecapa-voxceleb sizes): plumbing and cost only, no speaker quality; the tracker
    takes ECAPA's threshold and gives at most --max-speakers ids."""
    import mlx.core as mx
    from mlx.utils import tree_flatten

    from mlx_audio_stack.models.ecapa import EcapaArgs
    from mlx_audio_stack.models.ecapa.embed import EmbedConfig, SpeakerEncoder
    from mlx_audio_stack.models.ecapa.fbank import FbankArgs
    from mlx_audio_stack.models.ecapa.model import ECAPA_TDNN
    from mlx_audio_stack.pipeline import Pipeline, PipelineConfig
    from mlx_audio_stack.pipeline.components import TRACKER_THRESHOLDS

    net = ECAPA_TDNN(EcapaArgs())
    rng = np.random.default_rng(0)
    weights_in = []
    for k, v in tree_flatten(net.parameters()):  # what a converted folder gives load_weights
        a = rng.standard_normal(v.shape).astype(np.float32) * 0.05
        if k.endswith("running_var"):
            a = rng.uniform(0.5, 2.0, v.shape).astype(np.float32)
        weights_in.append((k, mx.array(a)))
    net.load_weights(weights_in)  # as the loader does: prepares the inference layouts
    net.eval()
    ecapa = SpeakerEncoder(net, FbankArgs(n_mels=80), EmbedConfig())  # as the loader pairs them
    p = Pipeline(
        whisper=weights["whisper-tiny.en"],
        vad=weights["silero-vad"],
        embedder=ecapa,
        separator=False,
        config=PipelineConfig(max_speakers=3),
    )
    assert p.components["embedder"] == "ecapa"
    assert p.tracker.threshold == TRACKER_THRESHOLDS["ecapa"]
    x = meeting.mix[: 16000 * 12]
    events = []
    for i in range(0, x.size, 8000):
        events += p.push(x[i : i + 8000])
    events += p.flush()
    res = p.result()
    assert 1 <= len(res.transcripts) <= 3 and " ".join(res.transcripts.values()).strip()
    assert {e["speaker"] for e in events if e["type"] == "speaker"} == set(res.transcripts)


def _librispeech(shared_data, utt: str) -> tuple[np.ndarray, str]:
    import soundfile as sf

    spk, chap, _ = utt.split("-")
    folder = next((shared_data / "librispeech").glob(f"test-*/{spk}/{chap}"))
    x, sr = sf.read(folder / f"{utt}.flac", dtype="float32")
    assert sr == 16000
    lines = (folder / f"{spk}-{chap}.trans.txt").read_text().splitlines()
    return x, next(ln.split(" ", 1)[1] for ln in lines if ln.startswith(utt + " "))


def test_three_people_at_once_get_three_streams(weights, shared_data):
    """Three LibriSpeech speakers start together and talk over each other for ~4.5 s (no
    synthetic meeting overlaps three at once). With true sources and true speaker ids (test
    doubles for separation and the tracker), the run must decide a count of 3, separate the
    window into three sources, and give each voice its own stream with its own words."""
    from mlx_audio_stack.pipeline import Pipeline

    utts = ("1688-142285-0004", "2609-156975-0000", "3080-5032-0000")
    voices = [_librispeech(shared_data, u) for u in utts]
    n = 16000 // 2 + max(x.size for x, _ in voices) + 16000
    sources = np.zeros((3, n), np.float32)
    for i, (x, _) in enumerate(voices):
        sources[i, 8000 : 8000 + x.size] = x
    labels = ("A", "B", "C")  # sorted: source i is labels[i]
    turns = [(lab, 0.5, 0.5 + x.size / 16000) for lab, (x, _) in zip(labels, voices)]
    p = Pipeline(
        whisper=weights["whisper-tiny.en"],
        vad=weights["silero-vad"],
        oracle_sources=sources,
        oracle_speakers=turns,
    )
    mix = sources.sum(axis=0)
    events = []
    for i in range(0, mix.size, 8000):
        events += p.push(mix[i : i + 8000])
    events += p.flush()
    res = p.result()
    three = [e for e in events if e["type"] == "overlap" and e["count"] == 3]
    assert three and all(e["separated"] and sorted(e["speakers"]) == list(labels) for e in three)
    assert sum(e["end"] - e["start"] for e in three) > 3.0
    assert sorted(res.transcripts) == list(labels)
    for lab, (_, ref) in zip(labels, voices):
        assert wer(ref, res.transcripts[lab]) < 0.35, (lab, ref, res.transcripts[lab])


def test_live_stdin_equals_the_file_run_on_the_three_speaker_demo(
    weights, offline_weights, meeting, tmp_path
):
    """The same with speakers: the demo meeting (3 voices, 2 overlaps) as raw PCM on stdin,
    with the voice encoder tracking, gives the file run's finals, speaker by speaker."""
    pcm = np.clip(np.round(meeting.mix * 32768.0), -32768, 32767).astype(np.int16)
    voice = offline_weights("voice-encoder")
    file_res = run_pipeline(
        pcm.astype(np.float32) / 32768.0,
        whisper=weights["whisper-tiny.en"],
        vad=weights["silero-vad"],
        embedder=voice,
        separator=False,
    )
    env = dict(os.environ, MAS_WEIGHTS_DIR=str(tmp_path))
    cmd = [sys.executable, "-m", "mlx_audio_stack", "pipeline", "-", "--quiet"]
    cmd += ["--model", str(weights["whisper-tiny.en"]), "--vad", str(weights["silero-vad"])]
    cmd += ["--embedder", str(voice), "--separator", "none"]
    proc = subprocess.run(cmd, input=pcm.tobytes(), capture_output=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr.decode()
    events = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    live = [(e["speaker"], e["text"]) for e in events if e["type"] == "final"]
    ran = [(e["speaker"], e["text"]) for e in file_res.events if e["type"] == "final"]
    assert live == ran and len({s for s, _ in live}) == 3
