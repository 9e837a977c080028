"""Every QA check: a manifest built to trip it, and a clean manifest that passes."""

from __future__ import annotations

import json
import zlib

import numpy as np
import pytest
from test_qa_support import SMALL, append_raw, clean_records, dump, ids, make_wav, write

import mlx_audio_stack  # noqa: F401
from mlx_audio_stack.data import run_qa
from mlx_audio_stack.data.adapters import build_librispeech


def qa(path, task="emotion", deep=False, overrides=SMALL, **kw):
    return run_qa(
        path, task, deep=deep, progress=False, record=False, profile_overrides=overrides, **kw
    )


@pytest.fixture
def clean(tmp_path):
    return clean_records(tmp_path)


@pytest.mark.parametrize("deep", [False, True])
def test_clean_manifest_passes(tmp_path, clean, deep):
    r = qa(write(clean, tmp_path / "m.jsonl"), deep=deep)
    assert r.passed, dump(r)
    assert not ids(r, "", "warning"), dump(r)
    assert ("audio_deep" in r.checks_run) == deep


def test_schema(tmp_path, clean):
    clean[0].pop("sample_rate")
    clean[1]["duration"] = "long"
    clean[2]["split"] = "training"
    clean[3]["id"] = clean[4]["id"]
    clean[5]["labels"] = {"emotion": 3}
    p = write(clean, tmp_path / "m.jsonl")
    append_raw(p, "{not json")
    r = qa(p)
    got = {f.check for f in r.findings}
    assert {
        "schema.missing",
        "schema.type",
        "schema.split",
        "schema.id_unique",
        "schema.parse",
    } <= got, dump(r)
    assert not r.passed
    miss = ids(r, "schema.missing")[0]
    assert miss.item == clean[0]["id"] and "sample_rate" in miss.expected


def test_consistency(tmp_path, clean):
    clean[0].update(start=0.1, end=0.4, duration=0.5)  # duration != end - start
    clean[1]["num_samples"] = 4000  # 0.25 s at 16 kHz, duration says 0.5
    clean[2].update(start=0.2, end=0.9, duration=0.7, recording_duration=0.5)
    r = qa(write(clean, tmp_path / "m.jsonl"))
    dur = {f.item for f in ids(r, "consistency.duration")}
    assert {clean[0]["id"], clean[1]["id"]} <= dur, dump(r)
    assert ids(r, "consistency.segment")[0].item == clean[2]["id"]
    assert ids(r, "audio.bounds")[0].item == clean[2]["id"]  # and the header agrees


def test_audio_missing_format_truncated(tmp_path, clean):
    clean[0]["audio"] = str(tmp_path / "nope.wav")
    clean[1]["sample_rate"] = 8000
    clean[1]["num_samples"] = 4000
    flac = make_wav(tmp_path / "trunc.flac", dur=3.0, seed=99)
    data = flac.read_bytes()
    flac.write_bytes(data[: len(data) // 2])  # a download cut in half
    clean[2]["audio"] = str(flac)
    clean[2].update(duration=3.0, num_samples=48000)
    p = write(clean, tmp_path / "m.jsonl")
    r = qa(p)
    assert ids(r, "audio.missing")[0].item.endswith("nope.wav")
    fmt = ids(r, "audio.format")[0]
    assert fmt.item == clean[1]["id"] and "8000" in fmt.expected and "16000" in fmt.got
    assert ids(r, "audio.truncated") or ids(r, "audio.unreadable"), dump(r)
    assert ids(r, "audio")[0].severity == "error"


def test_audio_deep_content(tmp_path, clean):
    for i, kind in enumerate(["nan", "clip", "silence", "dc"]):
        clean[i]["audio"] = str(make_wav(tmp_path / f"{kind}.wav", kind=kind, seed=50 + i))
    p = write(clean, tmp_path / "m.jsonl")
    assert qa(p).passed or True  # cheap mode does not decode
    r = qa(p, deep=True)
    for i, kind in enumerate(["nonfinite", "clipping", "silence", "dc_offset"]):
        hit = ids(r, f"audio_deep.{kind}")
        assert hit and hit[0].item == clean[i]["id"] and hit[0].severity == "error", dump(r)


def test_deep_truncated_segment(tmp_path, clean):
    # a segment past the end of its file decodes short (cheap mode says out of bounds)
    clean[0].update(start=0.0, end=0.9, duration=0.9, num_samples=14400)
    r = qa(write(clean, tmp_path / "m.jsonl"), deep=True)
    assert ids(r, "audio_deep.truncated")[0].item == clean[0]["id"]
    assert ids(r, "audio.bounds")


def test_limits_45s_clip_and_tokens(tmp_path, clean):
    long = make_wav(tmp_path / "long.wav", dur=45.0, seed=77)
    clean[0].update(audio=str(long), duration=45.0, num_samples=45 * 16000)
    clean[1]["text"] = "word " * 400  # ~2000 bytes: over 448 tokens by any count
    r = qa(write(clean, tmp_path / "m.jsonl"), task="asr")
    d = ids(r, "limits.duration")[0]
    assert d.item == clean[0]["id"] and d.got == "45.00 s" and "30" in d.expected
    assert ids(r, "limits.tokens")[0].item == clean[1]["id"]
    assert not r.passed


def test_token_estimate_is_conservative(shared_data):
    pytest.importorskip("whisper", reason="openai-whisper not installed (requirements/ref-whisper)")
    from mlx_audio_stack.data.gate import suite

    suite()  # importable from a source checkout even under plain `pytest`
    from data_quality.checks.limits import estimate_tokens, whisper_token_counter

    exact = whisper_token_counter(multilingual=True)
    texts = [
        line.split(" ", 1)[1]
        for f in (shared_data / "librispeech").rglob("*.trans.txt")
        for line in f.read_text().splitlines()
    ]
    assert texts
    assert all(estimate_tokens(t) >= exact(t) for t in texts + [t.lower() for t in texts])


def test_asr_needs_text(tmp_path, clean):
    clean[0]["text"] = None
    r = qa(write(clean, tmp_path / "m.jsonl"), task="asr")
    assert ids(r, "limits.text")[0].item == clean[0]["id"]


def test_labels_taxonomy_and_missing(tmp_path, clean):
    clean[0]["labels"] = {"emotion": "bored"}
    clean[1].pop("labels")
    r = qa(write(clean, tmp_path / "m.jsonl"))
    assert ids(r, "labels.taxonomy")[0].got == "'bored'"
    assert ids(r, "labels.missing")[0].item == clean[1]["id"]


def test_balance(tmp_path, clean):
    for r in clean[:24]:  # train: 20 happy, 4 sad
        r["labels"] = {"emotion": "happy"}
    clean[0]["labels"] = clean[6]["labels"] = clean[12]["labels"] = clean[18]["labels"] = {
        "emotion": "sad"
    }
    r = qa(write(clean, tmp_path / "m.jsonl"), overrides={**SMALL, "max_imbalance": 3.0})
    got = {f.check for f in r.findings}
    assert {"balance.majority", "balance.imbalance", "balance.min_count"} <= got, dump(r)
    maj = ids(r, "balance.majority")[0]
    assert "'happy' 20/24" in maj.got


def test_drift(tmp_path, clean):
    for r in clean[24:30]:  # valid speaker: all 'sad'; test speaker: an unseen label
        r["labels"] = {"emotion": "sad"}
    clean[30]["labels"] = {"emotion": "angry"}
    r = qa(write(clean, tmp_path / "m.jsonl"))
    tvd = ids(r, "drift.tvd")
    assert tvd and tvd[0].item == "train vs valid" and tvd[0].severity == "error"
    assert "'angry'" in ids(r, "drift.unseen")[0].got


def test_label_consistency(tmp_path, clean):
    dup = dict(clean[0], id="dup", labels={"emotion": "sad"})  # same utterance, other label
    r = qa(write(clean + [dup], tmp_path / "m.jsonl"))
    assert ids(r, "label_consistency.utterance"), dump(r)
    for rec in clean:  # gender is a speaker-level label: one value per speaker
        rec["labels"] = {"gender": "female" if rec["id"].endswith(("0", "2", "4")) else "male"}
    r = qa(write(clean, tmp_path / "g.jsonl"), task="gender")
    assert {f.item for f in ids(r, "label_consistency.speaker")} >= {"speaker spk0"}


def _real_speaker_manifest(shared_data, tmp_path):
    recs = build_librispeech(shared_data / "librispeech" / "test-other")
    for r in recs:  # utterances 0-7 of each speaker train, 8-9 test: closed-set speaker id
        r["split"] = "train" if int(r["id"].rsplit("-", 1)[1]) < 8 else "test"
    return recs


def test_hash_mod_n_speaker_labels(shared_data, tmp_path, monkeypatch):
    """The speaker-label bug: class = hash(speaker_id) % n_classes, on real LibriSpeech ids."""
    recs = _real_speaker_manifest(shared_data, tmp_path)
    speakers = sorted({r["speaker"] for r in recs})
    n = len(speakers)  # 10 speakers, 10 classes: collisions leave some classes empty
    for r in recs:
        r["label_ids"] = {"speaker": zlib.crc32(r["speaker"].encode()) % n}
    buckets = {zlib.crc32(s.encode()) % n for s in speakers}
    assert len(buckets) < n  # the bug is real on these ids
    mod = tmp_path / "buggy_mapping.py"
    mod.write_text(
        f"def hash_mod_n(task, labels):\n    return {{l: hash(l) % {n} for l in labels}}\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    p = write(recs, tmp_path / "spk.jsonl")
    r = qa(p, task="speaker_id", overrides=None, mapping_fn="buggy_mapping:hash_mod_n")
    got = {f.check for f in r.findings if f.severity == "error"}
    assert {"labels.ids_collision", "labels.ids_mapping", "determinism.process"} <= got, dump(r)
    assert not r.passed
    # the stable taxonomy mapping, stored the same way, passes
    from mlx_audio_stack.data.taxonomy import mapping

    table = mapping("speaker", speakers)
    for rec in recs:
        rec["label_ids"] = {"speaker": table[rec["speaker"]]}
    ok = qa(write(recs, tmp_path / "spk_ok.jsonl"), task="speaker_id", overrides=None)
    assert ok.passed, dump(ok)


def test_order_dependent_mapping(tmp_path, clean, monkeypatch):
    mod = tmp_path / "order_mapping.py"
    mod.write_text(
        "def first_seen(task, labels):\n    return {l: i for i, l in enumerate(labels)}\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    r = qa(write(clean, tmp_path / "m.jsonl"), mapping_fn="order_mapping:first_seen")
    assert ids(r, "determinism.order", "error"), dump(r)
    assert not ids(r, "determinism.process")


def test_train_test_speaker_leak(shared_data, tmp_path):
    recs = build_librispeech(shared_data / "librispeech" / "test-other")
    for r in recs:  # speaker-disjoint by default ... except one speaker split across both
        r["split"] = "test" if r["speaker"] in ("1688", "1998") else "train"
        if r["id"] == "1688-142285-0000":
            r["split"] = "train"
    r = qa(write(recs, tmp_path / "ls.jsonl"), task="asr")
    leak = ids(r, "splits.speaker_leak")
    assert [f.item for f in leak] == ["speaker 1688"], dump(r)
    assert leak[0].got == "test: 9, train: 1"
    r2 = qa(
        write(recs, tmp_path / "ls.jsonl"),
        task="gender",
        overrides={"min_class_count": 1, "max_majority": 1.0},
    )
    assert ids(r2, "splits.speaker_leak", "error")  # speaker-disjoint tasks fail on it


def test_utterance_audio_text_leaks(tmp_path, clean):
    clean[24]["audio"] = clean[0]["audio"]  # the same file in train and valid
    clean[25]["text"] = clean[1]["text"]  # same sentence in train and valid
    r = qa(write(clean, tmp_path / "m.jsonl"))
    assert ids(r, "splits.audio_leak", "error"), dump(r)
    assert ids(r, "splits.text_leak", "warning")
    other = str(make_wav(tmp_path / "meeting.wav", seed=321))
    seg = [
        dict(
            clean[0],
            audio=other,
            id=f"seg{i}",
            start=i * 0.2,
            end=i * 0.2 + 0.2,
            duration=0.2,
            num_samples=3200,
            split=s,
        )
        for i, s in enumerate(["train", "test"])
    ]
    r = qa(write(clean[:24] + clean[30:] + seg, tmp_path / "s.jsonl"), task="asr")
    assert ids(r, "splits.recording_leak", "warning"), dump(r)


def test_duplicates(tmp_path, clean):
    copy = tmp_path / "copy.wav"
    copy.write_bytes((tmp_path / "audio" / "s0_0.wav").read_bytes())  # same bytes, new name
    dup = dict(clean[0], id="copy", audio=str(copy), text="some other words here")
    near = dict(clean[1], id="near", audio=str(make_wav(tmp_path / "near.wav", seed=500)))
    r = qa(write(clean + [dup, near], tmp_path / "m.jsonl"))
    assert ids(r, "duplicates.exact")[0].item in ("copy", "s0_0"), dump(r)
    assert ids(r, "duplicates.near")


def test_deep_pcm_duplicate(tmp_path, clean):
    # same samples in another container: only the decoded-PCM fingerprint sees it
    import soundfile as sf

    x, sr = sf.read(str(tmp_path / "audio" / "s0_0.wav"), dtype="float32")
    sf.write(str(tmp_path / "same.flac"), x, sr)
    dup = dict(
        clean[0],
        id="flac-copy",
        audio=str(tmp_path / "same.flac"),
        split="test",
        text="entirely different words now",
    )
    recs = clean + [dup]
    assert not ids(qa(write(recs, tmp_path / "m.jsonl")), "duplicates.exact")
    r = qa(write(recs, tmp_path / "m.jsonl"), deep=True)
    assert ids(r, "duplicates.exact") and ids(r, "splits.audio_leak"), dump(r)


def test_speaker_count_without_overlap(shared_data, tmp_path):
    recs = build_librispeech(shared_data / "librispeech" / "test-other")  # all single speaker
    r = qa(write(recs, tmp_path / "ls.jsonl"), task="speaker_count")
    fit = ids(r, "task_fit.overlap")
    assert fit and fit[0].severity == "error" and "0 of 100" in fit[0].got, dump(r)


def test_speaker_count_label_mismatch(tmp_path, clean):
    for r in clean:
        r["labels"] = {"speaker_count": "1"}
        r["speakers"] = [r["speaker"]]
        r["overlap"] = 0.0
    clean[0]["labels"] = {"speaker_count": "2"}  # says two talkers, lists one, no overlap
    r = qa(write(clean, tmp_path / "m.jsonl"), task="speaker_count")
    assert ids(r, "task_fit.count_label")[0].item == clean[0]["id"]
    assert ids(r, "task_fit.overlap")


def _probs(clean, flip):
    from mlx_audio_stack.data.taxonomy import classes as task_classes

    classes = task_classes("emotion")
    p = np.full((len(clean), len(classes)), 0.01)
    for i, r in enumerate(clean):
        j = classes.index(r["labels"]["emotion"])
        if i in flip:  # the model confidently says another class of the data
            j = classes.index({"neutral": "happy", "happy": "sad", "sad": "neutral"}[classes[j]])
        p[i, j] = 0.9
    return p / p.sum(1, keepdims=True)


def test_label_errors_from_probs(tmp_path, clean):
    p = write(clean, tmp_path / "m.jsonl")
    np.save(tmp_path / "probs.npy", _probs(clean, {3, 7}))
    r = qa(p, deep=True, probs=tmp_path / "probs.npy")
    flagged = ids(r, "label_errors.likely")
    assert {f.item for f in flagged} == {clean[3]["id"], clean[7]["id"]}, dump(r)
    assert r.passed and flagged[0].severity == "warning"  # reported, not failed, by default
    r = qa(p, deep=True, probs=tmp_path / "probs.npy", fail_on_label_errors=True)
    assert not r.passed
    with open(tmp_path / "probs.jsonl", "w") as f:
        for rec, row in zip(clean, _probs(clean, {5})):
            f.write(json.dumps({"id": rec["id"], "probs": row.tolist()}) + "\n")
    r = qa(p, deep=True, probs=tmp_path / "probs.jsonl")
    assert [f.item for f in ids(r, "label_errors.likely")] == [clean[5]["id"]]
    assert ids(qa(p, deep=True), "label_errors.skipped", "info")
