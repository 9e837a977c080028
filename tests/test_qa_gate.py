"""The gate: require_qa refuses unchecked, failed, edited and stale manifests; the CLI's exit
codes; the pytest face of the suite."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest
from test_qa_support import SMALL, clean_records, write

import mlx_audio_stack  # noqa: F401
from mlx_audio_stack.cli import main
from mlx_audio_stack.data import QAGateError, qa_status, require_qa, run_qa
from mlx_audio_stack.paths import REPO_ROOT


@pytest.fixture
def manifest(tmp_path):
    return write(clean_records(tmp_path), tmp_path / "clean.jsonl")


def _run(path, task="emotion", **kw):
    return run_qa(path, task, progress=False, profile_overrides=SMALL, **kw)


def test_never_checked_is_refused(manifest):
    with pytest.raises(QAGateError, match="unchecked"):
        require_qa(manifest, "emotion")
    assert qa_status(manifest, "emotion").state == "unchecked"


def test_passed_then_edited_is_stale(manifest):
    assert _run(manifest).passed
    meta = require_qa(manifest, "emotion")
    assert meta["qa"]["state"] == "passed" and meta["qa"]["override"] is None
    assert len(meta["qa"]["manifest_hash"]) == 64
    with pytest.raises(QAGateError, match="unchecked"):  # another task was never checked
        require_qa(manifest, "asr")
    with open(manifest, "a") as f:  # edit after it passed
        f.write(manifest.read_text().splitlines()[0].replace('"s0_0"', '"s0_0b"') + "\n")
    st = qa_status(manifest, "emotion")
    assert st.state == "stale" and "changed" in st.reason
    with pytest.raises(QAGateError, match="stale"):
        require_qa(manifest, "emotion")


def test_failed_names_checks(tmp_path):
    recs = clean_records(tmp_path)
    recs[0]["labels"] = {"emotion": "bored"}
    p = write(recs, tmp_path / "bad.jsonl")
    assert not _run(p).passed
    with pytest.raises(QAGateError, match="labels.taxonomy"):
        require_qa(p, "emotion")


def test_override_is_logged_and_recorded(tmp_path, caplog):
    recs = clean_records(tmp_path)
    recs[0]["labels"] = {"emotion": "bored"}
    p = write(recs, tmp_path / "bad.jsonl")
    _run(p)
    with pytest.raises(QAGateError):
        require_qa(p, "emotion", override="  ")  # a blank reason is no override
    with caplog.at_level(logging.WARNING, logger="mlx_audio_stack.qa"):
        meta = require_qa(p, "emotion", override="ablation on noisy labels")
    ov = meta["qa"]["override"]
    assert ov["reason"] == "ablation on noisy labels" and "labels.taxonomy" in ov["failed_checks"]
    assert meta["qa"]["state"] == "failed"
    assert "OVERRIDDEN" in caplog.text
    json.dumps(meta)  # the caller stores it with its run


def test_suite_version_change_is_stale(manifest, monkeypatch):
    import data_quality

    _run(manifest)
    monkeypatch.setattr(data_quality, "SUITE_VERSION", "999")
    st = qa_status(manifest, "emotion")
    assert st.state == "stale" and "suite" in st.reason


def test_deep_required(manifest):
    _run(manifest)
    assert qa_status(manifest, "emotion", deep=True).state == "stale"
    with pytest.raises(QAGateError):
        require_qa(manifest, "emotion", deep=True)
    _run(manifest, deep=True)
    assert require_qa(manifest, "emotion", deep=True)["qa"]["state"] == "passed"


def test_cli_exit_codes_and_reports(tmp_path, capsys):
    recs = clean_records(tmp_path)
    good = write(recs, tmp_path / "good.jsonl")
    recs[0]["duration"] = 45.0  # inconsistent and over the window
    bad = write(recs, tmp_path / "bad.jsonl")
    rep = tmp_path / "rep"
    assert main(["qa", "run", str(good), "--task", "asr", "--report-dir", str(rep), "--quiet"]) == 0
    assert (
        main(
            [
                "qa",
                "run",
                str(bad),
                "--task",
                "asr",
                "--report-dir",
                str(rep),
                "--quiet",
                "--json",
                str(tmp_path / "bad.json"),
            ]
        )
        == 1
    )
    out = capsys.readouterr().out
    assert "PASSED" in out and "FAILED" in out and "limits" in out
    md = (rep / "bad-asr.md").read_text()
    assert "**FAILED**" in md and "| limits.duration | error | s0_0 |" in md
    data = json.loads((tmp_path / "bad.json").read_text())
    assert data["passed"] is False and "limits" in data["failed_checks"][0] + "".join(
        data["failed_checks"]
    )
    assert {"check", "severity", "item", "expected", "got"} == set(data["findings"][0])
    assert main(["qa", "status", str(good)]) == 0
    assert main(["qa", "status", str(bad)]) == 1
    assert "failed" in capsys.readouterr().out
    assert main(["qa", "status", str(tmp_path / "good.jsonl"), "--task", "emotion"]) == 1


def test_cli_json_stdout(manifest, capsys):
    assert main(["qa", "run", str(manifest), "--task", "asr", "--report-dir", "", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["passed"] is True


def _pytest_face(*args):
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "data_quality", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_pytest_face(tmp_path):
    r = _pytest_face("-rs")
    assert r.returncode == 0 and "no manifest given" in r.stdout, r.stdout[-2000:]
    recs = clean_records(tmp_path)
    good = write(recs, tmp_path / "good.jsonl")
    r = _pytest_face("--manifest", str(good), "--task", "asr", "--no-record")
    assert r.returncode == 0, r.stdout[-2000:]
    recs[0]["labels"] = {"emotion": "bored"}
    bad = write(recs, tmp_path / "bad.jsonl")
    r = _pytest_face("--manifest", str(bad), "--task", "emotion")
    assert r.returncode == 1 and "test_check[labels]" in r.stdout, r.stdout[-2000:]
    assert qa_status(bad, "emotion").state == "failed"  # the pytest run stored the verdict


def test_public_api_names():
    import mlx_audio_stack as mas

    assert mas.require_qa is require_qa and mas.run_qa is run_qa
    assert issubclass(mas.QAGateError, Exception)
