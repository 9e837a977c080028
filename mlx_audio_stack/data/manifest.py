"""Dataset manifests: JSON lines, one record per utterance or segment, with a schema and a
content hash.

A record (plain dict; `FIELDS` is the schema):
    {"id": "1688-142285-0000", "audio": "../data/x.flac", "start": 0.0, "end": null,
     "duration": 9.4, "sample_rate": 16000, "channels": 1, "speaker": "1688",
     "text": "THERE'S IRON ...", "labels": {"gender": "male"}, "split": "test",
     "dataset": "librispeech", "license": "CC-BY-4.0"}
Relative `audio` paths are resolved against the manifest's folder, so a manifest moves with
its data. The content hash is the sha256 of the manifest file's bytes: any edit changes it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..atomic import atomic_output
from ..errors import MasError

SCHEMA_VERSION = 1
SPLITS = ("train", "valid", "test")

# field -> (accepted types, required, description). Optional fields may be absent or null.
FIELDS: dict[str, tuple[tuple[type, ...], bool, str]] = {
    "id": ((str,), True, "unique record id"),
    "audio": ((str,), True, "audio file path (relative paths: to the manifest's folder)"),
    "start": ((int, float), False, "segment start in the file, seconds (default 0)"),
    "end": ((int, float), False, "segment end in the file, seconds (null: end of file)"),
    "duration": ((int, float), True, "segment duration, seconds"),
    "sample_rate": ((int,), True, "the file's sample rate, Hz"),
    "channels": ((int,), True, "the file's channel count"),
    "num_samples": ((int,), False, "samples in the segment at sample_rate"),
    "speaker": ((str,), False, "the speaker of a single-speaker record"),
    "speakers": ((list,), False, "all speakers active in the segment"),
    "overlap": ((int, float), False, "seconds with two or more active speakers"),
    "text": ((str,), False, "transcript"),
    "labels": ((dict,), False, "task -> label string (see taxonomy.py)"),
    "label_ids": ((dict,), False, "task -> class index, when a pipeline stored them"),
    "split": ((str,), True, f"one of {SPLITS}"),
    "dataset": ((str,), True, "source dataset name (see the data registry)"),
    "license": ((str,), True, "license of the audio"),
    "recording_id": ((str,), False, "the recording a segment comes from"),
    "recording_duration": ((int, float), False, "duration of that recording, seconds"),
    "extra": ((dict,), False, "free-form metadata (gender, accent, ...)"),
}
FIELD_ORDER = tuple(FIELDS)


class ManifestError(MasError):
    """A manifest cannot be read or written."""


@dataclass
class Manifest:
    """A parsed manifest: records in file order, lines that failed to parse, the content hash."""

    path: Path
    records: list[dict]
    content_hash: str
    parse_errors: list[tuple[int, str]] = field(default_factory=list)  # (line number, message)
    line_numbers: list[int] = field(default_factory=list)  # file line of each record

    @property
    def name(self) -> str:
        return self.path.name.removesuffix(".jsonl").removesuffix(".json")

    def audio_path(self, record: dict) -> Path:
        """The record's audio file, relative paths resolved against the manifest's folder."""
        return Path(self.audio_file(record))

    def audio_file(self, record: dict) -> str:
        """Like audio_path, as a string, memoized per distinct path (fast on 100k records)."""
        a = record.get("audio", "")
        cache = self.__dict__.setdefault("_resolved", {})
        hit = cache.get(a)
        if hit is None:
            base = self.__dict__.setdefault("_base", os.path.dirname(os.path.realpath(self.path)))
            hit = cache[a] = a if os.path.isabs(a) else os.path.normpath(os.path.join(base, a))
        return hit


def manifest_hash(path: str | Path) -> str:
    """sha256 of the manifest file's bytes (the key of the QA gate's status)."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: no such manifest file")
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_manifest(path: str | Path) -> Manifest:
    """Parse a JSON-lines manifest. Lines that are not JSON objects are kept as parse errors
    (the QA schema check reports them) instead of aborting."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: no such manifest file")
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    records: list[dict] = []
    lines: list[int] = []
    errors: list[tuple[int, str]] = []
    loads = json.loads
    for i, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = loads(line)
        except json.JSONDecodeError as exc:
            errors.append((i, f"not JSON ({exc.msg} at column {exc.colno})"))
            continue
        if not isinstance(rec, dict):
            errors.append((i, f"expected a JSON object, got {type(rec).__name__}"))
            continue
        records.append(rec)
        lines.append(i)
    return Manifest(path, records, digest, errors, lines)


def _ordered(rec: dict) -> dict:
    out = {k: rec[k] for k in FIELD_ORDER if k in rec and rec[k] is not None}
    out.update({k: v for k, v in rec.items() if k not in FIELDS and v is not None})
    return out


def write_manifest(records: Iterable[dict], path: str | Path, relative: bool = True) -> Path:
    """Write records as JSON lines (atomically). With `relative`, absolute audio paths become
    relative to the manifest's folder so manifest and data can move together."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    base = path.resolve().parent
    with atomic_output(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for rec in records:
            rec = dict(rec)
            if relative and os.path.isabs(rec.get("audio", "")):
                rec["audio"] = os.path.relpath(rec["audio"], base)
            f.write(json.dumps(_ordered(rec), ensure_ascii=False) + "\n")
    return path


def stable_fraction(key: str, seed: int = 0) -> float:
    """A number in [0, 1) from sha1(seed:key): the same in every process (unlike hash())."""
    d = hashlib.sha1(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(d[:8], "big") / 2**64


def assign_splits(
    records: list[dict], valid: float = 0.1, test: float = 0.1, by: str = "speaker", seed: int = 0
) -> list[dict]:
    """Deterministic split by a grouping field (default speaker, so no speaker spans splits).
    Returns new records; records without the field are grouped by their id."""
    out = []
    for rec in records:
        key = str(rec.get(by) or rec["id"])
        u = stable_fraction(key, seed)
        split = "test" if u < test else "valid" if u < test + valid else "train"
        out.append({**rec, "split": split})
    return out
