"""The data-QA gate: training entry points call `require_qa(manifest, task)` first.

The suite's verdict is stored next to the manifest (`<manifest>.qa.json`; in
$MAS_QA_CACHE or ~/.cache/mlx-audio-stack/qa when that folder is not writable), keyed by
manifest content hash + suite version + task. Editing the manifest, or a new suite version,
makes the stored verdict stale, and the gate refuses until the suite passes again.

The verdict binds the audio: it holds a fingerprint of every file the manifest names (see
`fingerprint.py`), re-checked at gate time, and each verdict is signed (HMAC-SHA256) with a
per-user key, so editing the file, or writing one from scratch, reads as "unchecked".
"""

from __future__ import annotations

import getpass
import hashlib
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ..atomic import atomic_output
from ..errors import MasError
from ..paths import REPO_ROOT
from .fingerprint import (
    VerdictFileError,
    files_digest,
    key_path,
    merge_fingerprints,
    sign,
    verify_entry,
    verify_files,
)
from .manifest import manifest_hash

log = logging.getLogger("mlx_audio_stack.qa")


class QAGateError(MasError):
    """Training refused: the manifest has not passed the QA suite for this task."""


def suite():
    """The `data_quality` package (the QA suite); importable from a source checkout too."""
    try:
        import data_quality
    except ImportError:
        if (REPO_ROOT / "data_quality" / "__init__.py").is_file():
            sys.path.insert(0, str(REPO_ROOT))
            import data_quality
        else:
            raise MasError("the data_quality suite is not installed with this package") from None
    return data_quality


def status_path(manifest: str | Path) -> Path:
    """Where the gate status of `manifest` lives."""
    manifest = Path(manifest).resolve()
    beside = manifest.with_name(manifest.name + ".qa.json")
    if os.access(manifest.parent, os.W_OK):
        return beside
    root = Path(os.environ.get("MAS_QA_CACHE") or Path.home() / ".cache/mlx-audio-stack/qa")
    return root / (hashlib.sha1(str(manifest).encode()).hexdigest()[:16] + ".qa.json")


def _load(path: Path) -> dict:
    """The stored verdicts; a missing file is empty. Raises VerdictFileError when the file
    exists but is not a verdict file (bad JSON, wrong types)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {"entries": {}, "files": {}}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise VerdictFileError(f"{path}: unreadable QA verdict file ({exc})") from None
    if not isinstance(data, dict):
        raise VerdictFileError(
            f"{path}: QA verdict file holds {type(data).__name__}, not an object"
        )
    entries, files = data.setdefault("entries", {}), data.setdefault("files", {})
    if not isinstance(entries, dict) or not all(isinstance(e, dict) for e in entries.values()):
        raise VerdictFileError(f"{path}: QA verdict file: 'entries' is not a table of verdicts")
    if not isinstance(files, dict) or not all(isinstance(f, dict) for f in files.values()):
        raise VerdictFileError(f"{path}: QA verdict file: 'files' is not a table of fingerprints")
    return data


def stored_tasks(manifest: str | Path) -> list[str]:
    """Tasks with a stored verdict for `manifest` (none when the verdict file is unreadable)."""
    try:
        entries = _load(status_path(manifest))["entries"].values()
    except VerdictFileError:
        return []
    return sorted({str(e.get("task")) for e in entries if isinstance(e.get("task"), str)})


def record_result(result, report: str | None = None) -> Path:
    """Store a QAResult's verdict (the gate reads it), authenticated with the user's QA key
    and bound to the audio by the fingerprints the suite took. Returns the status file."""
    path = status_path(result.manifest)
    try:
        data = _load(path)
    except VerdictFileError as exc:
        log.warning("%s; replacing it", exc)
        data = {"entries": {}, "files": {}}
    files = merge_fingerprints(data.get("files", {}), getattr(result, "files", {}) or {})
    passed, failed = result.passed, list(result.failed_checks)
    missing = _uncovered(result.manifest, files) if passed else []
    if missing:  # a pass must cover every file it vouches for
        passed, failed = False, [*failed, "gate.fingerprints"]
        log.warning("%s: no fingerprint for %s: recorded as failed", result.manifest, missing[0])
    key = f"{result.task}:{result.manifest_hash}:{result.suite_version}"
    entry = {
        "task": result.task,
        "manifest_hash": result.manifest_hash,
        "suite_version": result.suite_version,
        "passed": passed,
        "deep": result.deep,
        "failed_checks": failed,
        "errors": sum(f.severity == "error" for f in result.findings),
        "warnings": sum(f.severity == "warning" for f in result.findings),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "report": report,
        "files_digest": files_digest(files, result.deep),
    }
    entry["hmac"] = sign(entry)
    data["entries"][key] = entry
    data["files"] = files
    data["manifest"] = str(Path(result.manifest).resolve())
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, sort_keys=True)
    return path


def _uncovered(manifest: str | Path, files: dict) -> list[str]:
    from .manifest import read_manifest

    audio = {r["audio"] for r in read_manifest(manifest).records if isinstance(r.get("audio"), str)}
    return sorted(audio - set(files))


@dataclass
class GateStatus:
    """state: 'passed', 'failed', 'stale' (checked, but not this content/suite/audio) or
    'unchecked' (never checked, or no trustworthy verdict)."""

    state: str
    reason: str
    manifest_hash: str
    suite_version: str
    entry: dict | None = None


def qa_status(
    manifest: str | Path, task: str, deep: bool = False, verify: str = "partial"
) -> GateStatus:
    """The gate's view of `manifest` for `task` (deep=True: only a --deep run counts).

    A pass also re-checks the audio against the verdict's fingerprints (`verify_files`;
    verify='full' rehashes every file of a deep verdict). A verdict file that is broken or
    whose signature fails reads as 'unchecked', with the reason.
    """
    version = suite().SUITE_VERSION
    h = manifest_hash(manifest)
    path = status_path(manifest)
    rerun = f"run `mas qa run {manifest} --task {task}`"
    try:
        data = _load(path)
    except VerdictFileError as exc:
        return GateStatus("unchecked", f"{exc}; {rerun}", h, version)
    entries = data["entries"]
    entry = entries.get(f"{task}:{h}:{version}")
    if entry is not None and not verify_entry(entry):
        why = (
            "is not signed (written by hand, or by an older version)"
            if "hmac" not in entry
            else f"fails its signature (edited, or signed with another QA key than {key_path()})"
        )
        return GateStatus(
            "unchecked", f"{path}: the stored verdict for task {task!r} {why}; {rerun}", h, version
        )
    if entry and (entry["deep"] or not deep):
        if entry["passed"]:
            problem = verify_files(manifest, data["files"], entry, verify)
            if problem:
                return GateStatus(
                    "stale", f"the audio changed since the QA run: {problem}", h, version, entry
                )
            return GateStatus(
                "passed",
                f"passed {entry['time']}" + (" (deep)" if entry["deep"] else " (cheap)"),
                h,
                version,
                entry,
            )
        return GateStatus(
            "failed", "failed checks: " + ", ".join(entry["failed_checks"]), h, version, entry
        )
    if entry:
        return GateStatus(
            "stale", "only a cheap run passed; a --deep run is required", h, version, entry
        )
    same_task = [e for e in entries.values() if e.get("task") == task]
    if any(e.get("manifest_hash") != h for e in same_task):
        return GateStatus(
            "stale", f"the manifest changed since its last QA run (now {h[:12]})", h, version
        )
    if same_task:
        return GateStatus("stale", f"the QA suite changed (now version {version})", h, version)
    return GateStatus("unchecked", f"never checked for task {task!r}: {rerun}", h, version)


def require_qa(
    manifest: str | Path,
    task: str,
    override: str | None = None,
    deep: bool = False,
    verify: str = "partial",
) -> dict:
    """Refuse (QAGateError naming the failed checks) unless `manifest` passed the QA suite for
    `task` with this exact content and suite version, and its audio files still match the
    fingerprints the suite took (size + hash of their first and last 16 KiB; `verify="full"`:
    also the full sha256 of every file, for a deep verdict).

    `override`: a reason string that lets an experiment run anyway; it is logged as a
    warning and recorded. Returns metadata the caller stores with its run, e.g.
    {"qa": {"manifest": ..., "manifest_hash": ..., "suite_version": ..., "task": ...,
            "state": "passed", "override": None}}.
    """
    st = qa_status(manifest, task, deep=deep, verify=verify)
    meta = {
        "manifest": str(Path(manifest).resolve()),
        "manifest_hash": st.manifest_hash,
        "suite_version": st.suite_version,
        "task": task,
        "state": st.state,
        "reason": st.reason,
        "override": None,
    }
    if st.state == "passed":
        return {"qa": meta}
    if not override or not str(override).strip():
        raise QAGateError(
            f"{manifest}: QA gate for task {task!r} is {st.state}: {st.reason}. "
            f"Fix the data and run `mas qa run {manifest} --task {task}`, or pass "
            "an explicit override reason for an experiment."
        )
    try:
        user = getpass.getuser()
    except Exception:  # no login name in some containers
        user = "unknown"
    meta["override"] = {
        "reason": str(override),
        "user": user,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "failed_checks": (st.entry or {}).get("failed_checks", []),
    }
    log.warning(
        "QA gate OVERRIDDEN for %s (task %s, state %s: %s): %s",
        manifest,
        task,
        st.state,
        st.reason,
        override,
    )
    return {"qa": meta}
