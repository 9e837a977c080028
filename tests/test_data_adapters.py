"""Adapters on the shared real speech (LibriSpeech, FSDD, AMI RTTM, tables) and on
synthetic files named by the RAVDESS / CREMA-D conventions."""

from __future__ import annotations

from collections import Counter

import pytest
from test_qa_support import make_wav

import mlx_audio_stack  # noqa: F401
from mlx_audio_stack.cli import main
from mlx_audio_stack.data import read_manifest, run_qa
from mlx_audio_stack.data.adapters import (
    build_cremad,
    build_fsdd,
    build_librispeech,
    build_ravdess,
    build_rttm,
    build_table,
)
from mlx_audio_stack.data.adapters.rttm import activity
from mlx_audio_stack.data.manifest import ManifestError


def test_librispeech(shared_data):
    recs = build_librispeech(shared_data / "librispeech")
    assert len(recs) == 105
    r = next(x for x in recs if x["id"] == "1688-142285-0000")
    assert r["text"].startswith("THERE'S IRON THEY SAY") and r["speaker"] == "1688"
    assert r["split"] == "test" and r["sample_rate"] == 16000
    assert r["labels"]["gender"] in ("female", "male")
    assert Counter(x["split"] for x in recs) == {"test": 104, "valid": 1}
    un = build_librispeech(shared_data / "librispeech_untranscribed")
    assert len(un) == 254 and all(x.get("text") is None for x in un)


def test_fsdd(shared_data):
    recs = build_fsdd(shared_data / "fsdd")
    assert len(recs) == 3000 and recs[0]["sample_rate"] == 8000
    r = next(x for x in recs if x["id"] == "7_jackson_3")
    assert r["text"] == "seven" and r["split"] == "test" and r["labels"]["gender"] == "male"
    assert Counter(x["split"] for x in recs) == {"test": 300, "train": 2700}


def test_rttm_windows_and_turns(shared_data):
    rttm = shared_data / "ami_meeting_clips" / "debug.train.rttm"
    win = build_rttm(rttm)
    assert len(win) == 60  # 10 clips x 6 windows of 5 s (UEM: whole 30 s)
    assert {r["recording_id"] for r in win} == {f"trn{i:02d}" for i in range(10)}
    multi = [r for r in win if int(r["labels"]["speaker_count"]) >= 2]
    assert multi and all(r["overlap"] > 0 and len(r["speakers"]) >= 2 for r in multi)
    turns = build_rttm(rttm, mode="turns")
    assert len(turns) == 77 and all(r["speaker"] in r["speakers"] for r in turns)


def test_rttm_uri_folding(tmp_path):
    make_wav(tmp_path / "trn00.wav", dur=2.0)
    (tmp_path / "x.rttm").write_text(
        "SPEAKER trñ00 1 0.10 1.00 <NA> <NA> A <NA> <NA>\n"
        "SPEAKER trñ00 1 0.60 1.00 <NA> <NA> B <NA> <NA>\n"
    )
    recs = build_rttm(tmp_path / "x.rttm", window=1.0)
    assert [r["extra"]["rttm_uri"] for r in recs] == ["trñ00", "trñ00"]
    assert [r["labels"]["speaker_count"] for r in recs] == ["2", "2"]
    assert recs[0]["overlap"] == pytest.approx(0.4) and recs[1]["overlap"] == pytest.approx(0.1)
    with pytest.raises(ManifestError, match="no audio"):
        build_rttm(tmp_path / "x.rttm", audio_dir=tmp_path / "nowhere")


def test_activity_counts_people_not_turns():
    turns = [(0, 2, "a"), (1, 3, "a"), (1.5, 2.5, "b")]  # a's own turns overlap
    spk, overlap, most = activity(turns, 0, 3)
    assert spk == ["a", "b"] and most == 2 and overlap == pytest.approx(1.0)


def test_table_adapter(shared_data, tmp_path):
    recs = build_table(
        shared_data / "MANIFEST.tsv",
        where={"relpath": "valentini/"},
        columns={"id": "relpath"},
        dataset="valentini",
    )
    assert len(recs) == 12 and recs[0]["speaker"] == "p287"
    csv = tmp_path / "t.csv"
    make_wav(tmp_path / "a.wav")
    make_wav(tmp_path / "b.wav", seed=1)
    csv.write_text("file,who,emo,split\na.wav,x,ANG,train\nb.wav,y,neu,dev\n")
    recs = build_table(csv, columns={"speaker": "who"}, labels={"emotion": "emo"})
    assert [r["labels"]["emotion"] for r in recs] == ["angry", "neutral"]
    assert [r["split"] for r in recs] == ["train", "valid"] and recs[0]["speaker"] == "x"
    with pytest.raises(ManifestError, match="not in header"):
        build_table(csv, columns={"text": "transcript"})


def test_ravdess_and_cremad(tmp_path):
    for actor in range(1, 7):
        for emo in ("01", "05"):
            make_wav(
                tmp_path / "rav" / f"Actor_{actor:02d}" / f"03-01-{emo}-01-02-01-{actor:02d}.wav",
                seed=actor,
            )
    recs = build_ravdess(tmp_path / "rav")
    assert len(recs) == 12
    r = next(x for x in recs if x["id"] == "ravdess-03-01-05-01-02-01-03")
    assert r["labels"] == {"emotion": "angry", "gender": "male", "speaker_count": "1"}
    assert r["text"] == "Dogs are sitting by the door" and r["speaker"] == "ravdess-03"
    spl = {}
    for x in recs:
        spl.setdefault(x["speaker"], set()).add(x["split"])
    assert all(len(s) == 1 for s in spl.values())  # speaker-disjoint
    (tmp_path / "cre").mkdir()
    (tmp_path / "cre" / "VideoDemographics.csv").write_text(
        "ActorID,Age,Sex,Race,Ethnicity\n1001,51,Male,Caucasian,Not Hispanic\n"
    )
    make_wav(tmp_path / "cre" / "AudioWAV" / "1001_DFA_ANG_XX.wav")
    make_wav(tmp_path / "cre" / "AudioWAV" / "1002_IEO_HAP_HI.wav", seed=3)
    recs = build_cremad(tmp_path / "cre", split="train")
    assert [x["labels"]["emotion"] for x in recs] == ["angry", "happy"]
    assert recs[0]["labels"]["gender"] == "male" and "gender" not in recs[1]["labels"]
    assert recs[1]["text"] == "It's eleven o'clock" and recs[1]["extra"]["level"] == "high"
    with pytest.raises(ManifestError, match="no CREMA-D"):
        build_cremad(tmp_path / "rav")


def test_cli_manifest_then_qa(shared_data, tmp_path, capsys):
    out = tmp_path / "ls.jsonl"
    assert (
        main(
            [
                "data",
                "manifest",
                "librispeech",
                str(shared_data / "librispeech" / "test-clean"),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert "4 records" in capsys.readouterr().out
    assert len(read_manifest(out).records) == 4
    r = run_qa(out, "asr", progress=False, record=False)
    assert r.passed, [f.line() for f in r.findings]
