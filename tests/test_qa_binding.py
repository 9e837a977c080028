"""The QA gate binds the audio it vouches for (issue 16, item 6): after a passed run,
replacing, truncating, deleting or silencing a file, or copying the manifest and its verdict
elsewhere, is refused with a message naming the file; a verdict edited or written from
scratch fails its signature and reads as unchecked; a broken verdict file reads as unchecked
(also in `mas qa status`). Outputs get the user's umask (item 11)."""

from __future__ import annotations

import json
import os
import shutil
import stat

import numpy as np
import pytest
import soundfile as sf
from test_qa_support import SMALL, clean_records, make_wav, write

import mlx_audio_stack  # noqa: F401
from mlx_audio_stack.cli import main
from mlx_audio_stack.data import QAGateError, qa_status, require_qa, run_qa
from mlx_audio_stack.data.fingerprint import PART_BYTES, sign
from mlx_audio_stack.data.gate import status_path


@pytest.fixture(autouse=True)
def qa_key(tmp_path, monkeypatch):
    """A fresh per-test signing key (never the user's own)."""
    key = tmp_path / "keys" / "qa.key"
    monkeypatch.setenv("MAS_QA_KEY_FILE", str(key))
    return key


@pytest.fixture
def data(tmp_path):
    """A passing manifest (audio in data/audio, paths stored relative) and its records."""
    recs = clean_records(tmp_path / "data")
    # one longer file, so that its middle lies outside the partial hash's two ends
    long = make_wav(tmp_path / "data" / "audio" / "s0_0.wav", dur=3.0, seed=99)
    recs[0].update(duration=3.0, num_samples=48000, audio=str(long))
    return write(recs, tmp_path / "data" / "m.jsonl"), recs


def _run(path, deep=False, task="emotion"):
    res = run_qa(path, task, deep=deep, progress=False, profile_overrides=SMALL)
    assert res.passed or task != "emotion", [f.line() for f in res.findings[:5]]
    return res


def _refused(manifest, name, match, deep=False, **kw):
    with pytest.raises(QAGateError) as err:
        require_qa(manifest, "emotion", deep=deep, **kw)
    msg = str(err.value)
    assert str(name) in msg and match in msg, msg
    return msg


def test_passed_then_allowed_and_key_is_private(data, qa_key):
    manifest, _ = data
    _run(manifest)
    assert require_qa(manifest, "emotion")["qa"]["state"] == "passed"
    assert stat.S_IMODE(qa_key.stat().st_mode) == 0o600 and len(qa_key.read_bytes()) == 32
    verdict = json.loads(status_path(manifest).read_text())
    assert len(verdict["files"]) == 36 and all("partial" in f for f in verdict["files"].values())


def test_replaced_by_another_utterance(data):
    manifest, recs = data
    _run(manifest)
    victim = recs[5]["audio"]
    make_wav(tmp := (manifest.parent / "other.wav"), seed=1234)
    os.replace(tmp, victim)  # same duration, same size, other content
    _refused(manifest, victim, "content differs")


def test_truncated_to_zero_bytes(data):
    manifest, recs = data
    _run(manifest)
    open(recs[3]["audio"], "wb").close()
    _refused(manifest, recs[3]["audio"], "size 0 bytes")


def test_deleted(data):
    manifest, recs = data
    _run(manifest)
    os.unlink(recs[7]["audio"])
    msg = _refused(manifest, recs[7]["audio"], "missing")
    assert "stale" in msg


def test_silence_after_a_deep_pass(data):
    manifest, recs = data
    _run(manifest, deep=True)
    assert require_qa(manifest, "emotion", deep=True)["qa"]["state"] == "passed"
    # the whole file replaced by digital silence of the same length
    short = recs[4]["audio"]
    sf.write(short, np.zeros(8000, np.float32), 16000, subtype="PCM_16")
    _refused(manifest, short, "content differs", deep=True)
    make_wav(manifest.parent / "x.wav", seed=4)  # put it back: passes again
    os.replace(manifest.parent / "x.wav", short)
    assert require_qa(manifest, "emotion", deep=True)["qa"]["state"] == "passed"
    # only the middle of the long file silenced: both ends (the partial hash) unchanged
    long = recs[0]["audio"]
    size = os.path.getsize(long)
    with open(long, "r+b") as f:
        f.seek(PART_BYTES + 4096)
        f.write(bytes(size - 2 * PART_BYTES - 8192))
    st = os.stat(long)
    os.utime(long, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # a write moves the mtime
    _refused(manifest, long, "sha256", deep=True)
    # the mtime put back by hand: the ctime still moved, so the deep gate rehashes it
    fp = json.loads(status_path(manifest).read_text())["files"][
        os.path.relpath(long, manifest.parent)
    ]
    os.utime(long, ns=(st.st_atime_ns, fp["mtime_ns"]))
    assert os.stat(long).st_mtime_ns == fp["mtime_ns"]
    _refused(manifest, long, "sha256", deep=True)
    _refused(manifest, long, "sha256", deep=True, verify="full")


def test_touched_but_unchanged_still_passes(data):
    manifest, recs = data
    _run(manifest)
    os.utime(recs[1]["audio"])  # new mtime and ctime, same bytes: rehashed, and it matches
    assert require_qa(manifest, "emotion")["qa"]["state"] == "passed"


def test_copied_elsewhere_without_the_audio(data, tmp_path):
    manifest, recs = data
    _run(manifest)
    other = tmp_path / "elsewhere"
    other.mkdir()
    shutil.copy(manifest, other / manifest.name)
    shutil.copy(status_path(manifest), other / (manifest.name + ".qa.json"))
    missing = other / "audio" / "s0_0.wav"  # the first of 36, named
    _refused(other / manifest.name, missing, "missing")
    # the manifest moved together with its audio still passes: the content is the same
    shutil.copytree(manifest.parent / "audio", other / "audio")
    assert require_qa(other / manifest.name, "emotion")["qa"]["state"] == "passed"


def _failed(tmp_path):
    recs = clean_records(tmp_path)
    recs[0]["labels"] = {"emotion": "bored"}
    p = write(recs, tmp_path / "bad.jsonl")
    assert not run_qa(p, "emotion", progress=False, profile_overrides=SMALL).passed
    return p


def test_forged_by_editing_passed(tmp_path):
    p = _failed(tmp_path)
    path = status_path(p)
    data = json.loads(path.read_text())
    for e in data["entries"].values():
        e["passed"], e["failed_checks"] = True, []
    path.write_text(json.dumps(data))
    assert qa_status(p, "emotion").state == "unchecked"
    _refused(p, path, "fails its signature")


def test_forged_from_scratch(tmp_path, monkeypatch):
    p = _failed(tmp_path)
    path = status_path(p)
    real = json.loads(path.read_text())
    (key,) = real["entries"]
    task, mh, version = key.split(":")
    entry = {
        "task": task,
        "manifest_hash": mh,
        "suite_version": version,
        "passed": True,
        "deep": True,
        "failed_checks": [],
        "errors": 0,
        "warnings": 0,
        "time": "2026-01-01T00:00:00+0000",
        "report": None,
        "files_digest": real["entries"][key]["files_digest"],
    }
    path.write_text(json.dumps({"entries": {key: entry}, "files": real["files"]}))
    _refused(p, path, "is not signed")
    path.write_text(json.dumps({"entries": {key: {**entry, "hmac": "0" * 64}}}))
    _refused(p, path, "fails its signature")
    # signed with another user's key
    monkeypatch.setenv("MAS_QA_KEY_FILE", str(tmp_path / "other.key"))
    entry["hmac"] = sign(entry)
    monkeypatch.setenv("MAS_QA_KEY_FILE", str(tmp_path / "keys" / "qa.key"))
    path.write_text(json.dumps({"entries": {key: entry}, "files": real["files"]}))
    _refused(p, path, "fails its signature")


def test_fingerprint_table_edited_to_match_a_truncated_file(data):
    manifest, recs = data
    _run(manifest)
    path = status_path(manifest)
    victim = recs[2]["audio"]
    open(victim, "wb").close()
    verdict = json.loads(path.read_text())
    verdict["files"][os.path.relpath(victim, manifest.parent)]["size"] = 0
    path.write_text(json.dumps(verdict))
    _refused(manifest, "fingerprint table", "edited")


BROKEN = {
    "malformed JSON": '{"entries": {',
    "not an object": "[1, 2]",
    "entries a list": '{"entries": []}',
    "entry a number": '{"entries": {"emotion:x:1": 5}}',
    "files a string": '{"entries": {}, "files": "x"}',
    "not UTF-8": b"\xff\xfe{".decode("latin-1"),
}


def test_broken_verdict_file_reads_unchecked(data, capsys):
    manifest, _ = data
    _run(manifest)
    path = status_path(manifest)
    for kind, text in BROKEN.items():
        path.write_bytes(text.encode("latin-1"))
        st = qa_status(manifest, "emotion")
        assert st.state == "unchecked" and str(path) in st.reason, (kind, st.reason)
        _refused(manifest, path, "unchecked")
        assert main(["qa", "status", str(manifest)]) == 1
        assert main(["qa", "status", str(manifest), "--task", "emotion"]) == 1
        out = capsys.readouterr().out
        assert "unchecked" in out and str(path) in out, (kind, out)
    _run(manifest)  # a new run replaces the broken file
    assert require_qa(manifest, "emotion")["qa"]["state"] == "passed"


def test_wrong_typed_entry_reads_unchecked(data):
    manifest, _ = data
    res = _run(manifest)
    path = status_path(manifest)
    key = f"emotion:{res.manifest_hash}:{res.suite_version}"
    path.write_text(json.dumps({"entries": {key: {"task": 5, "passed": "yes", "deep": []}}}))
    assert qa_status(manifest, "emotion").state == "unchecked"
    _refused(manifest, path, "is not signed")


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_outputs_follow_the_umask(data, tmp_path, umask):
    from mlx_audio_stack.formats import write_atomic

    manifest, recs = data
    old = os.umask(umask)
    try:
        m2 = write(recs, tmp_path / f"u{umask}.jsonl")
        _run(m2)
        txt = write_atomic(tmp_path / "out" / "a.txt", "hello\n")
    finally:
        os.umask(old)
    want = 0o666 & ~umask
    for p in (m2, status_path(m2), txt):
        assert stat.S_IMODE(p.stat().st_mode) == want, (p, oct(p.stat().st_mode))
