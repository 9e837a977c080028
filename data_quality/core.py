"""The check registry and runner: each check reads a Context and returns Findings."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mlx_audio_stack.data.manifest import Manifest, read_manifest

from .profiles import TaskProfile, get_profile

SUITE_VERSION = "1"  # bump when a check changes what it accepts: every stored status goes stale
SEVERITIES = ("error", "warning", "info")


@dataclass(slots=True)
class Finding:
    """One problem: which check, how bad, which item (record id, file, split...), both values."""

    check: str
    severity: str
    item: str
    expected: str
    got: str

    def line(self) -> str:
        return (
            f"[{self.severity}] {self.check}: {self.item}: expected {self.expected}, got {self.got}"
        )


@dataclass(frozen=True)
class Check:
    id: str
    description: str
    fn: Callable[[Context], list[Finding]]
    deep_only: bool = False


CHECKS: dict[str, Check] = {}


def check(cid: str, description: str, deep_only: bool = False):
    """Decorator: register `fn(ctx) -> list[Finding]` under `cid` (run in registration order)."""

    def deco(fn):
        CHECKS[cid] = Check(cid, description, fn, deep_only)
        return fn

    return deco


@dataclass
class Context:
    """What the checks share: the manifest, the task profile, options and caches."""

    manifest: Manifest
    profile: TaskProfile
    deep: bool = False
    probs: str | Path | None = None  # out-of-sample predicted probabilities (label errors)
    count_tokens: Callable[[str], int] | None = None  # tokenizer; else a conservative estimate
    mapping_fn: str | None = None  # "module:function" label mapping to test for determinism
    fail_on_label_errors: bool = False
    progress: bool = True
    cache: dict = field(default_factory=dict)  # filled by earlier checks (headers, fingerprints)

    @property
    def records(self) -> list[dict]:
        return self.manifest.records

    def label_of(self, rec: dict) -> str | None:
        """The record's label for the profile's task (None when it has none)."""
        p = self.profile
        if p.label_task is None:
            return None
        lab = (rec.get("labels") or {}).get(p.label_task)
        if lab is None and p.label_from_speaker:
            lab = rec.get("speaker")
        return None if lab is None else str(lab)


@dataclass
class QAResult:
    """The suite's verdict on one manifest for one task."""

    manifest: str
    manifest_hash: str
    suite_version: str
    task: str
    deep: bool
    findings: list[Finding]
    checks_run: list[str]
    stats: dict
    seconds: float
    files: dict = field(default_factory=dict)  # audio -> fingerprint, bound into the verdict

    @property
    def passed(self) -> bool:
        return not any(f.severity == "error" for f in self.findings)

    @property
    def failed_checks(self) -> list[str]:
        return sorted({f.check for f in self.findings if f.severity == "error"})

    def counts(self) -> dict[str, Counter]:
        out: dict[str, Counter] = {c: Counter() for c in self.checks_run}
        for f in self.findings:
            out.setdefault(f.check.split(".")[0], Counter())[f.severity] += 1
        return out

    def to_dict(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if k not in ("findings", "files")}
        d.update(
            passed=self.passed,
            failed_checks=self.failed_checks,
            findings=[asdict(f) for f in self.findings],
        )
        return d


def manifest_stats(ctx: Context) -> dict:
    recs = ctx.records
    by_split = Counter(r.get("split") for r in recs)
    dur = sum(
        float(r.get("duration") or 0) for r in recs if isinstance(r.get("duration"), (int, float))
    )
    labels = Counter(ctx.label_of(r) for r in recs) if ctx.profile.label_task else Counter()
    return {
        "records": len(recs),
        "hours": round(dur / 3600, 4),
        "splits": dict(sorted(by_split.items(), key=lambda kv: str(kv[0]))),
        "speakers": len({r.get("speaker") for r in recs if r.get("speaker")}),
        "files": len({r.get("audio") for r in recs}),
        "datasets": sorted({str(r.get("dataset")) for r in recs}),
        "labels": {str(k): v for k, v in sorted(labels.items(), key=lambda kv: str(kv[0]))},
    }


def run_suite(
    manifest: str | Path | Manifest,
    task: str,
    deep: bool = False,
    only: list[str] | None = None,
    profile_overrides: dict | None = None,
    **options,
) -> QAResult:
    """Run every registered check (cheap ones, plus the deep ones with `deep`) on a manifest.
    Options go to the Context: probs, count_tokens, mapping_fn, fail_on_label_errors, progress."""
    from . import checks  # noqa: F401  (registers the checks)

    t0 = time.perf_counter()
    m = manifest if isinstance(manifest, Manifest) else read_manifest(manifest)
    ctx = Context(m, get_profile(task, **(profile_overrides or {})), deep=deep, **options)
    findings: list[Finding] = []
    ran = []
    for cid, chk in CHECKS.items():
        if only and cid not in only:
            continue
        if chk.deep_only and not deep:
            continue
        findings += chk.fn(ctx)
        ran.append(cid)
    return QAResult(
        str(m.path),
        m.content_hash,
        SUITE_VERSION,
        task,
        deep,
        findings,
        ran,
        manifest_stats(ctx),
        round(time.perf_counter() - t0, 3),
        ctx.cache.get("gate_files", {}),
    )
