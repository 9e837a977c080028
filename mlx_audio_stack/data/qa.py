"""`run_qa`: run the data-QA suite on a manifest, store the gate status, write reports."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .gate import record_result, suite
from .manifest import read_manifest


def run_qa(
    manifest: str | Path,
    task: str,
    deep: bool = False,
    report_dir: str | Path | None = None,
    json_path: str | Path | None = None,
    probs: str | Path | None = None,
    count_tokens: Callable[[str], int] | None = None,
    mapping_fn: str | None = None,
    fail_on_label_errors: bool = False,
    plots: bool = True,
    progress: bool = True,
    record: bool = True,
    command: str | None = None,
    profile_overrides: dict | None = None,
):
    """Run the suite for `task` and return the QAResult (`.passed`, `.findings`).

    report_dir: write `<manifest>-<task>.md` (+ PNG plots) there; json_path: the full result
    as JSON; record: store the verdict for `require_qa`.
    """
    dq = suite()
    m = read_manifest(manifest)
    result = dq.run_suite(
        m,
        task,
        deep=deep,
        probs=probs,
        count_tokens=count_tokens,
        mapping_fn=mapping_fn,
        fail_on_label_errors=fail_on_label_errors,
        progress=progress,
        profile_overrides=profile_overrides,
    )
    report = None
    if report_dir is not None:
        from data_quality.core import Context
        from data_quality.report import write_markdown, write_plots

        out = Path(report_dir)
        out.mkdir(parents=True, exist_ok=True)
        stem = f"{m.name}-{task}"
        ctx = Context(m, dq.get_profile(task, **(profile_overrides or {})))
        made = write_plots(result, m.records, ctx.label_of, out, stem) if plots else None
        report = str(write_markdown(result, out / f"{stem}.md", made, command))
    if json_path is not None:
        from data_quality.report import write_json

        write_json(result, Path(json_path))
    if record:
        record_result(result, report)
    return result
