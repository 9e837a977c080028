"""The pipeline evaluation harness (issue 18): the meeting builder (tools/make_meetings.py) is
deterministic and builds what it is asked for, as measured from its own sources; the metric
wrapper (tools/_meeting_metrics.py) hands our data to meeteval / pyannote.metrics correctly
(zero for a hypothesis equal to the reference, the hand-computed value for known
perturbations)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import require

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))

SR = 16000


@pytest.fixture(scope="module")
def builder(shared_data):
    require("pyroomacoustics", "sh tools/install_refs.sh (requirements/ref-pipeline.txt)")
    import make_meetings

    return make_meetings, shared_data, make_meetings.noise_pool(shared_data)


@pytest.fixture(scope="module")
def metrics():
    require("meeteval", "sh tools/install_refs.sh (requirements/ref-pipeline.txt)")
    require("pyannote.metrics", "sh tools/install_refs.sh (requirements/ref-pipeline.txt)")
    require("whisper", "sh tools/install_refs.sh (openai-whisper's text normaliser)")
    import _meeting_metrics

    return _meeting_metrics


# ---------------------------------------------------------------------------- builder


def test_builder_same_seed_same_bytes(builder, tmp_path):
    mm, data, pool = builder
    spec = mm.MeetingSpec(2, 0.3, 5.0, seconds=12.0)
    a = mm.build(spec, data, tmp_path / "a", seed=3, pool=pool)
    b = mm.build(spec, data, tmp_path / "b", seed=3, pool=pool)
    c = mm.build(spec, data, tmp_path / "c", seed=4, pool=pool)
    files = sorted(p.name for p in (tmp_path / "a" / spec.name).iterdir())
    assert files == ["meta.json", "mix.wav", "ref.rttm", "ref.seglst.json", "sources.npy"]
    for f in files:
        assert (tmp_path / "a" / spec.name / f).read_bytes() == (
            tmp_path / "b" / spec.name / f
        ).read_bytes(), f
    assert a == b
    assert (tmp_path / "a" / spec.name / "mix.wav").read_bytes() != (
        tmp_path / "c" / spec.name / "mix.wav"
    ).read_bytes()
    assert a["utterances"] != c["utterances"] or a["room"] != c["room"]


def _activity(source: np.ndarray, fill_s: float = 1.0) -> np.ndarray:
    """10 ms frames where the source is within 40 dB of its loudest frame, gaps < fill_s closed."""
    from scipy.ndimage import binary_closing

    n = source.size // 160
    energy = (source[: n * 160].reshape(n, 160).astype(np.float64) ** 2).mean(1)
    act = energy > energy.max() * 1e-4
    return binary_closing(act, np.ones(int(fill_s * 100) + 1, bool))


@pytest.fixture(scope="module")
def meeting(builder, tmp_path_factory):
    mm, data, pool = builder
    spec = mm.MeetingSpec(2, 0.3, 5.0, seconds=45.0)
    out = tmp_path_factory.mktemp("meet")
    mm.build(spec, data, out, seed=0, pool=pool)
    return out / spec.name


def test_built_overlap_and_snr_measured_from_sources(meeting):
    import soundfile as sf

    meta = json.loads((meeting / "meta.json").read_text())
    mix, sr = sf.read(str(meeting / "mix.wav"), dtype="float32")
    src = np.load(meeting / "sources.npy")
    assert sr == SR and src.shape == (2, mix.size) and src.dtype == np.float32
    # overlap ratio from the sources' own activity: time with both / time with any
    act = np.stack([_activity(s) for s in src])
    both, anyone = np.count_nonzero(act.all(0)), np.count_nonzero(act.any(0))
    assert abs(both / anyone - 0.3) < 0.05, both / anyone
    assert abs(meta["overlap_built"] - 0.3) <= 0.01
    # SNR: noise = mix - sum of sources, powers over the reference speech time
    speech = src.sum(0).astype(np.float64)
    noise = mix - speech
    mask = np.zeros(mix.size, bool)
    for u in meta["utterances"]:
        mask[int(round(u["start"] * SR)) : int(round(u["end"] * SR))] = True
    snr = 10 * np.log10(np.mean(speech[mask] ** 2) / np.mean(noise[mask] ** 2))
    assert abs(snr - 5.0) < 0.05, snr
    assert meta["noise_pieces"] and meta["room"]["rt60_s"] > 0


def test_references_agree_with_sources(meeting):
    meta = json.loads((meeting / "meta.json").read_text())
    src = np.load(meeting / "sources.npy")
    rttm = [line.split() for line in (meeting / "ref.rttm").read_text().splitlines()]
    seg = json.loads((meeting / "ref.seglst.json").read_text())
    assert len(rttm) == len(seg) == len(meta["utterances"]) >= 3
    for r, s, u in zip(rttm, seg, meta["utterances"]):
        assert r[1] == s["session_id"] == meta["name"]
        assert r[7] == s["speaker"] == u["speaker"]
        assert abs(float(r[3]) - s["start_time"]) < 1e-3
        assert abs(float(r[3]) + float(r[4]) - s["end_time"]) < 2e-3
        assert s["words"] == u["text"] and s["words"].strip()
    for k, spk in enumerate(meta["speakers"]):
        mask = np.zeros(src.shape[1], bool)
        turns = [(s["start_time"], s["end_time"]) for s in seg if s["speaker"] == spk]
        assert turns, spk
        for a, b in turns:
            mask[int(a * SR) : int(b * SR)] = True
        energy = src[k].astype(np.float64) ** 2
        assert energy[mask].sum() / energy.sum() > 0.995  # only reverb tails outside turns
        act = _activity(src[k], fill_s=0.3)
        for a, b in turns:  # each turn is mostly speech of its speaker
            assert act[int(a * 100) : int(b * 100)].mean() > 0.7, (spk, a, b)


def test_meeting_set_sizes(builder):
    mm = builder[0]
    assert len(mm.meeting_set("quick")) == 3
    full = mm.meeting_set("full")
    assert len(full) == 4 + 2 * 5 * 4
    assert {(s.n_speakers, s.overlap) for s in full} >= {(3, 0.4), (2, 0.0), (1, 0.0)}


# ---------------------------------------------------------------------------- metrics

REF_TURNS = [("A", 0.0, 4.0), ("B", 3.0, 7.0), ("A", 8.0, 10.0)]  # 10 s of speech, 1 s overlap
UEM = (0.0, 11.0)
REF_TEXT = [
    {"speaker": "A", "start_time": 0.0, "end_time": 4.0, "words": "HELLO WORLD AGAIN"},
    {"speaker": "B", "start_time": 3.0, "end_time": 7.0, "words": "FOO BAR BAZ"},
    {"speaker": "A", "start_time": 8.0, "end_time": 10.0, "words": "GOOD BYE"},
]


def test_word_error_rates_zero_and_known(metrics):
    M = metrics  # noqa: N806
    ref = M.seglst("s", REF_TEXT)
    same = M.seglst("s", [dict(r, speaker="x" + r["speaker"]) for r in REF_TEXT])
    assert M.cp_wer(ref, same)["error_rate"] == 0.0
    assert M.tcp_wer(ref, same)["error_rate"] == 0.0
    punct = [dict(r, words=r["words"].capitalize() + ",") for r in REF_TEXT]
    assert M.cp_wer(ref, M.seglst("s", punct))["errors"] == 0  # the normaliser is applied
    one_del = [dict(r) for r in REF_TEXT]
    one_del[1]["words"] = "FOO BAZ"
    r = M.cp_wer(ref, M.seglst("s", one_del))
    assert (r["errors"], r["length"], r["deletions"]) == (1, 8, 1)
    assert r["error_rate"] == pytest.approx(1 / 8)
    # B's words said by A's stream: cpWER counts them as 3 insertions + 3 deletions
    moved = [dict(r) for r in REF_TEXT]
    moved[1]["speaker"] = "A"
    r = M.cp_wer(ref, M.seglst("s", moved))
    assert r["errors"] == 6 and r["missed_speaker"] == 1
    # B's segment 20 s late: outside tcpWER's 5 s collar, no change for cpWER
    late = [dict(r) for r in REF_TEXT]
    late[1].update(start_time=23.0, end_time=27.0)
    assert M.cp_wer(ref, M.seglst("s", late))["errors"] == 0
    assert M.tcp_wer(ref, M.seglst("s", late))["errors"] == 6
    assert M.combine([{"errors": 1, "length": 8}, {"errors": 3, "length": 2}]) == 0.4


def test_der_jer_zero_and_known(metrics):
    M = metrics  # noqa: N806
    r = M.der_jer(REF_TURNS, [("x" + s, a, b) for s, a, b in REF_TURNS], UEM)
    assert r["der"] == 0.0 and r["jer"] == 0.0 and r["total_s"] == pytest.approx(10.0)
    short = [("A", 0.0, 4.0), ("B", 3.0, 6.0), ("A", 8.0, 10.0)]
    r = M.der_jer(REF_TURNS, short, UEM)
    assert r["missed_s"] == pytest.approx(1.0) and r["der"] == pytest.approx(0.1)
    assert r["jer"] == pytest.approx((0.0 + 0.25) / 2)  # mean over speakers of (miss+fa)/union
    wrong = [("A", 0.0, 4.0), ("B", 3.0, 7.0), ("B", 8.0, 10.0)]
    r = M.der_jer(REF_TURNS, wrong, UEM)
    assert r["confusion_s"] == pytest.approx(2.0) and r["der"] == pytest.approx(0.2)


def test_overlap_detection_and_counts(metrics):
    M = metrics  # noqa: N806
    counts = M.count_frames(REF_TURNS, 0.01, 1100)
    assert counts[350] == 2 and counts[100] == 1 and counts[750] == 0
    r = M.overlap_detection(REF_TURNS, counts, 0.01, UEM)
    assert (r["precision"], r["recall"]) == (pytest.approx(1.0), pytest.approx(1.0))
    half = np.zeros(1100, np.int64)
    half[300:350] = 2  # half of the true overlap, plus 0.5 s of false overlap
    half[600:650] = 2
    r = M.overlap_detection(REF_TURNS, half, 0.01, UEM)
    assert r["recall"] == pytest.approx(0.5) and r["precision"] == pytest.approx(0.5)
    assert M.speaker_count_error(REF_TURNS, 3) == 1 and M.speaker_count_error(REF_TURNS, 2) == 0
    # what a run decided was overlapped, from its overlap events
    events = [
        {"type": "final", "start": 0.0, "end": 9.0},
        {"type": "overlap", "start": 3.0, "end": 3.5},
        {"type": "overlap", "start": 6.0, "end": 6.5},
    ]
    frames = M.overlap_event_frames(events, 0.01, 11.0)
    assert frames.size == 1100 and list(np.flatnonzero(np.diff(frames))) == [299, 349, 599, 649]
    np.testing.assert_array_equal(frames >= 2, half >= 2)
    assert M.runs(frames >= 2) == [(300, 350), (600, 650)]
    assert M.speech_regions(REF_TURNS) == [(0.0, 7.0), (8.0, 10.0)]


def test_latency_and_rtf(metrics):
    M = metrics  # noqa: N806
    events = [
        {
            "type": "partial",
            "speaker": "S1",
            "emitted_at": 1.5,
            "words": [{"word": "hello", "start": 0.2, "end": 0.6}],
        },
        {
            "type": "final",
            "speaker": "S1",
            "emitted_at": 2.5,
            "text": "Hello world",
            "words": [
                {"word": "Hello", "start": 0.2, "end": 0.6},
                {"word": "world", "start": 0.7, "end": 1.0},
            ],
        },
    ]
    lat = M.latencies(events, [(0.6, 2.5), (1.0, 2.5)])
    assert lat["final_word"]["median"] == pytest.approx((1.9 + 1.5) / 2)
    assert sorted([lat["first_word"]["n"]]) == [2]
    assert lat["first_word"]["median"] == pytest.approx((0.9 + 1.5) / 2)
    rtf = M.rtf({"audio_s": 10.0, "wall_s": 5.0, "stage_s": {"asr": 4.0}})
    assert rtf == {"total": 0.5, "asr": 0.4}


def test_eval_scores_reference_as_hypothesis_zero(meeting, metrics):
    """tools/eval_pipeline.py's scoring path, fed the reference itself (its --dry-run)."""
    import eval_pipeline

    m = metrics.load_meeting(meeting)
    res = eval_pipeline.reference_result(m["seglst"], m["meta"]["duration_s"])
    row = eval_pipeline.score(res, m["seglst"], m["turns"], (0, m["meta"]["duration_s"]), m["name"])
    assert row["cpwer"]["errors"] == 0 and row["cpwer"]["length"] > 50
    assert row["tcpwer"]["errors"] == 0
    assert row["diarization"]["der"] == 0.0 and row["diarization"]["jer"] < 1e-9
    assert row["overlap_detection"]["recall"] == pytest.approx(1.0, abs=0.02)
    assert row["overlap_detection"]["precision"] == pytest.approx(1.0, abs=0.02)
    assert row["overlap_decision"]["recall"] == pytest.approx(1.0, abs=0.02)
    assert row["overlap_decision"]["precision"] == pytest.approx(1.0, abs=0.02)
    assert row["speaker_count_error"] == 0 and row["speakers_hyp"] == 2
    # the first utterance left out of the hypothesis: missed for its whole length (where the
    # other speaker overlaps it too, one of the two reference speakers is missing)
    turns = sorted(m["turns"], key=lambda t: t[1])
    a, b = turns[0][1:]
    d = metrics.der_jer(turns, turns[1:], (0, m["meta"]["duration_s"]))
    assert d["missed_s"] == pytest.approx(b - a, abs=2e-3) and d["confusion_s"] == 0
    assert d["der"] == pytest.approx((b - a) / d["total_s"], abs=1e-4)


def test_memory_job_spools_and_reports_the_peak(offline_weights, monkeypatch):
    """The memory run (`eval_pipeline --memory`) pushes a file live with its events spooled to
    disk, as `mas pipeline` does, and samples RSS and the peak; the report shows both."""
    import _pipeline_jobs as jobs
    import _pipeline_report as report

    from mlx_audio_stack.paths import DEMO_CLIP

    tiny = offline_weights("whisper-tiny.en")
    monkeypatch.setenv("MAS_WEIGHTS_DIR", str(offline_weights("silero-vad").parent))
    job = {"path": str(DEMO_CLIP), "minutes": 1.0, "every_s": 2.0, "whisper": str(tiny)}
    job |= {"embedder": "none", "separator": "none"}
    row = jobs.job_memory(job)
    assert row["audio_s"] > 10 and row["words"] > 10
    samples = row["rss_mb"]
    assert len(samples) >= 5 and all(len(s) == 4 for s in samples)
    assert [s[0] for s in samples] == sorted(s[0] for s in samples)
    assert all(s[3] >= s[1] - 1 for s in samples)  # the peak bounds the RSS of each sample
    assert row["peak_after_outputs_mb"] >= samples[-1][3]
    text = "\n".join(report.memory_table({"clip": row}))
    assert "Events spooled to disk" in text and "| peak RSS MB |" in text
    assert f"({row['words']} words;" in text
    # a row from before the spool (3-value samples) still renders, its peak unknown
    old = dict(row, rss_mb=[s[:3] for s in samples])
    del old["words"]
    text = "\n".join(report.memory_table({"clip": old}))
    assert "Events kept in memory" in text and "| – |" in text


def test_overlap_rule_decisions_and_scores(metrics):
    """tools/eval_overlap_rule.py: the rule grid's decision and its pooled frame scores, on
    frames with a known answer."""
    import eval_overlap_rule as R  # noqa: N812

    p = np.zeros(40)
    p[5:8] = 0.9  # a 3-frame run
    p[10:11] = 0.95  # 1 frame, 2 frames after it
    p[20:21] = 0.85  # a lone frame
    p[30:34] = 0.7  # below 0.8
    d = R.decide(p, 0.8, 1, 3, 2)
    assert list(np.flatnonzero(d)) == list(range(5, 11))  # joined; the lone frame dropped
    assert not R.decide(p, 0.8, 1, 0, 2)[10] and R.decide(p, 0.8, 1, 0, 2)[5]
    assert R.decide(p, 0.6, 1, 0, 2)[30:34].all()
    # a centred mean over 3 frames spreads the 3-frame run and drops the lone 0.85
    sm = R.decide(p, 0.55, 3, 0, 1)
    assert sm[5:8].all() and not sm[20]
    ref2 = np.ones(40, np.int64)
    ref2[5:11] = 2  # the 2-speaker meeting's true overlap
    ref1 = np.ones(40, np.int64)
    ref1[:4] = 0  # silence in the 1-speaker one is not scored
    s = R.score({"m2": (p, ref2), "m1": (p, ref1)}, (0.8, 1, 3, 2))
    # m2: frames 5-10 right (6); m1: the same 6 frames false (all speech)
    assert s["precision"] == pytest.approx(0.5) and s["recall"] == pytest.approx(1.0)
    assert s["flagged_1spk"] == pytest.approx(6 / 36)
    assert s["f1"] == pytest.approx(2 / 3)


def test_report_keeps_rows_run_alone_and_random_separator_rows_apart():
    """A row run with the machine to itself (`--alone`) is a speed figure: the speed table
    pools it apart from rows of the same kind run beside other jobs; AMI rows with a
    random-weight separator get their own table (their DER says nothing)."""
    import _pipeline_report as report

    def meeting(rtf, alone=False, sep="mossformer2, random weights"):
        r = {"n_speakers": 2, "mode": "system", "stats": {"audio_s": 80.0}, "child_cpu_s": 160.0}
        r |= {"rtf": {"total": rtf, "separation": rtf - 0.5}, "components": {"separation": sep}}
        return r | ({"alone": True} if alone else {})

    rows = {"a": meeting(5.0), "b": meeting(2.5, alone=True), "c": meeting(0.6, sep="none")}
    lines = [x for x in report.speed_table(rows) if x.startswith("| 2 |")]
    assert len(lines) == 3
    alone = [x for x in lines if "run alone" in x]
    assert len(alone) == 1 and "| 2.50 |" in alone[0] and "| 5.00 |" not in alone[0]
    assert report.mode_label(rows["b"]).endswith("(random-weight separator: cost only, run alone)")

    def clip(name, sep):
        d = {"der": 0.4, "jer": 0.5, "missed_s": 1.0, "false_alarm_s": 0.0, "confusion_s": 1.0}
        od = {"precision": 0.5, "recall": 0.2, "ref_overlap_s": 2.0, "hyp_overlap_s": 1.0}
        return {
            "clip": name,
            "components": {"overlap": "speaker-count", "separation": sep},
            "diarization": d | {"total_s": 30.0},
            "overlap_detection": od,
            "speakers_ref": 3,
            "speakers_hyp": 2,
            "speaker_count_error": -1,
            "rtf": {"total": 1.0},
        }

    ami = {"trn00": clip("trn00", "none"), "trn00|random-sep": clip("trn00", "random weights")}
    text = report.ami_table(ami)
    heads = [x for x in text if x.startswith("Overlap detector")]
    assert heads == [
        "Overlap detector: speaker-count.",
        "Overlap detector: speaker-count; separator with random weights (cost only: its DER"
        " says nothing).",
    ]
    assert sum(x.startswith("| trn00 |") for x in text) == 2


def test_single_speaker_verdict_says_which_side_and_where_the_two_differ(metrics, shared_data):
    """The single-speaker proof's line: outside 0.5 points on the good side is said so, and
    rows that kept both hypotheses say in how many utterances the two differ, and which way."""
    import _pipeline_report as report
    from eval_whisper import utterances

    utts = utterances(2)
    (p0, ref0), (p1, ref1) = utts
    hyps = [{"pipeline": ref0, "transcribe": ref0 + " and then some"}]
    hyps.append({"pipeline": ref1, "transcribe": ref1})
    n = len(ref0.split()) + len(ref1.split())
    row = {"n": 2, "audio_s": 20.0, "rtf_pipeline": 0.5, "rtf_transcribe": 0.1}
    row |= {"utterances": [p0.name, p1.name], "hypotheses": hyps}
    row |= {"wer_pipeline": {"wer": 0.0, "errors": 0, "words": n}}
    row |= {"wer_transcribe": {"wer": 3 / n, "errors": 3, "words": n}}
    line = report.single_table({"librispeech": row})[-1]
    assert "on the good side" in line
    assert (
        "differ in 1 of the 2 utterances: the pipeline makes fewer errors in 1, more in 0" in line
    )
    row["wer_pipeline"] = {"wer": 3 / n, "errors": 3, "words": n}
    line = report.single_table({"librispeech": row | {"hypotheses": None}})[-1]
    assert line == "Difference +0.00 points: within the 0.5 points the issue asks for."
