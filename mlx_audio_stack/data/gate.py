"""The data-QA gate: training entry points call `require_qa(manifest, task)` first.

The suite's verdict is stored next to the manifest (`<manifest>.qa.json`; in
$MAS_QA_CACHE or ~/.cache/mlx-audio-stack/qa when that folder is not writable), keyed by
manifest content hash + suite version + task. Editing the manifest, or a new suite version,
makes the stored verdict stale, and the gate refuses until the suite passes again.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import logging
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import MasError
from ..paths import REPO_ROOT
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
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {"entries": {}}


def record_result(result, report: str | None = None) -> Path:
    """Store a QAResult's verdict (the gate reads it). Returns the status file."""
    path = status_path(result.manifest)
    data = _load(path)
    key = f"{result.task}:{result.manifest_hash}:{result.suite_version}"
    data.setdefault("entries", {})[key] = {
        "task": result.task,
        "manifest_hash": result.manifest_hash,
        "suite_version": result.suite_version,
        "passed": result.passed,
        "deep": result.deep,
        "failed_checks": result.failed_checks,
        "errors": sum(f.severity == "error" for f in result.findings),
        "warnings": sum(f.severity == "warning" for f in result.findings),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "report": report,
    }
    data["manifest"] = str(Path(result.manifest).resolve())
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=str(path.parent), prefix=".qa-status.")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, sort_keys=True)
    os.replace(tmp, path)
    return path


@dataclass
class GateStatus:
    """state: 'passed', 'failed', 'stale' (checked, but not this content/suite) or 'unchecked'."""

    state: str
    reason: str
    manifest_hash: str
    suite_version: str
    entry: dict | None = None


def qa_status(manifest: str | Path, task: str, deep: bool = False) -> GateStatus:
    """The gate's view of `manifest` for `task` (deep=True: only a --deep run counts)."""
    version = suite().SUITE_VERSION
    h = manifest_hash(manifest)
    entries = _load(status_path(manifest)).get("entries", {})
    entry = entries.get(f"{task}:{h}:{version}")
    if entry and (entry["deep"] or not deep):
        if entry["passed"]:
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
    same_task = [e for e in entries.values() if e["task"] == task]
    if any(e["manifest_hash"] != h for e in same_task):
        return GateStatus(
            "stale", f"the manifest changed since its last QA run (now {h[:12]})", h, version
        )
    if same_task:
        return GateStatus("stale", f"the QA suite changed (now version {version})", h, version)
    return GateStatus(
        "unchecked",
        f"never checked for task {task!r}: run `mas qa run {manifest} --task {task}`",
        h,
        version,
    )


def require_qa(
    manifest: str | Path, task: str, override: str | None = None, deep: bool = False
) -> dict:
    """Refuse (QAGateError naming the failed checks) unless `manifest` passed the QA suite for
    `task` with this exact content and suite version.

    `override`: a reason string that lets an experiment run anyway; it is logged as a
    warning and recorded. Returns metadata the caller stores with its run, e.g.
    {"qa": {"manifest": ..., "manifest_hash": ..., "suite_version": ..., "task": ...,
            "state": "passed", "override": None}}.
    """
    st = qa_status(manifest, task, deep=deep)
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
