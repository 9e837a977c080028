"""Dataset manifests, adapters, label taxonomy, the data registry and the data-QA gate.

from mlx_audio_stack.data import build_manifest, run_qa, require_qa
build_manifest("librispeech", "../shared/data/librispeech", "data/ls.jsonl")
result = run_qa("data/ls.jsonl", "asr", report_dir="reports/qa")   # result.passed
meta = require_qa("data/ls.jsonl", "asr")    # raises QAGateError unless it passed
"""

from __future__ import annotations

from pathlib import Path

from .gate import GateStatus, QAGateError, qa_status, record_result, require_qa
from .manifest import (
    FIELDS,
    SCHEMA_VERSION,
    SPLITS,
    Manifest,
    ManifestError,
    assign_splits,
    manifest_hash,
    read_manifest,
    write_manifest,
)
from .qa import run_qa


def build_manifest(adapter: str, source: str | Path, out: str | Path, **options) -> Path:
    """Build a manifest with one of the adapters (`ADAPTERS`) and write it as JSON lines."""
    from .adapters import ADAPTERS

    if adapter not in ADAPTERS:
        raise ManifestError(f"unknown adapter {adapter!r}; known: {sorted(ADAPTERS)}")
    return write_manifest(ADAPTERS[adapter](source, **options), out)


__all__ = [
    "FIELDS",
    "SCHEMA_VERSION",
    "SPLITS",
    "GateStatus",
    "Manifest",
    "ManifestError",
    "QAGateError",
    "assign_splits",
    "build_manifest",
    "manifest_hash",
    "qa_status",
    "read_manifest",
    "record_result",
    "require_qa",
    "run_qa",
    "write_manifest",
]
