"""Helpers for the data/QA tests: tiny synthetic audio files and manifests (no tests here)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf

import mlx_audio_stack  # noqa: F401
from mlx_audio_stack.data.manifest import write_manifest

SR = 16000
WORDS = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike".split()


def make_wav(
    path: Path,
    dur: float = 0.5,
    sr: int = SR,
    kind: str = "tone",
    seed: int = 0,
    subtype: str | None = None,
) -> Path:
    """A short signal: tone+noise (default), 'silence', 'nan', 'clip' or 'dc'."""
    rng = np.random.default_rng(seed)
    n = int(round(dur * sr))
    t = np.arange(n) / sr
    x = 0.3 * np.sin(2 * np.pi * (200 + 37 * seed) * t) + 0.02 * rng.standard_normal(n)
    if kind == "silence":
        x = np.zeros(n)
    elif kind == "nan":
        x[n // 3 : n // 3 + 10] = np.nan
        subtype = "FLOAT"
    elif kind == "clip":
        x = np.clip(4 * x, -1.0, 1.0)
    elif kind == "dc":
        x = x * 0.1 + 0.2
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), x.astype(np.float32), sr, subtype=subtype)
    return path


def record(
    path: Path,
    rid: str,
    split: str,
    speaker: str,
    label: str | None = None,
    text: str | None = None,
    task: str = "emotion",
    dur: float = 0.5,
    sr: int = SR,
    **extra,
) -> dict:
    rec = {
        "id": rid,
        "audio": str(path),
        "start": 0.0,
        "duration": dur,
        "sample_rate": sr,
        "channels": 1,
        "num_samples": int(round(dur * sr)),
        "speaker": speaker,
        "text": text,
        "split": split,
        "dataset": "synthetic",
        "license": "CC0-1.0",
    }
    if label is not None:
        rec["labels"] = {task: label}
    rec.update(extra)
    return rec


def clean_records(
    tmp: Path, classes=("neutral", "happy", "sad"), per_speaker: int = 6
) -> list[dict]:
    """Speaker-disjoint splits (4 train, 1 valid, 1 test speakers), balanced emotion labels,
    distinct audio and distinct 4-word texts."""
    recs, k = [], 0
    for s, split in enumerate(["train"] * 4 + ["valid", "test"]):
        for j in range(per_speaker):
            path = make_wav(tmp / "audio" / f"s{s}_{j}.wav", seed=k)
            text = " ".join(WORDS[(k + i * 5) % len(WORDS)] for i in range(4)) + f" {k}"
            recs.append(
                record(path, f"s{s}_{j}", split, f"spk{s}", classes[j % len(classes)], text)
            )
            k += 1
    return recs


# thresholds for the tiny clean manifest (8 train examples per class)
SMALL = {"min_class_count": 5}


def write(recs: list[dict], path: Path) -> Path:
    return write_manifest(recs, path)


def append_raw(path: Path, line: str) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(line + "\n")


def ids(result, prefix: str, severity: str | None = None) -> list:
    return [
        f
        for f in result.findings
        if f.check.startswith(prefix) and (severity is None or f.severity == severity)
    ]


def dump(result) -> str:
    return json.dumps([f.line() for f in result.findings[:30]], indent=1)
