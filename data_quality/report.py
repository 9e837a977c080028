"""QA reports: markdown with a findings table, PNG plots (when matplotlib is installed), JSON."""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from pathlib import Path

from mlx_audio_stack.formats import write_atomic

from .core import CHECKS, QAResult

ROWS_PER_KIND = 15


def _cell(s: object) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")[:160]


def _rel(p: str | Path, to: Path) -> str:
    try:
        return os.path.relpath(Path(p).resolve(), to.resolve())
    except ValueError:
        return str(p)


def write_plots(
    result: QAResult, records: list[dict], label_of, out_dir: Path, stem: str
) -> list[tuple[str, str]]:
    """Label distribution per split, durations, per-speaker counts. [] without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    made = []
    splits = sorted({str(r.get("split")) for r in records})
    labels = Counter(label_of(r) for r in records)
    labels.pop(None, None)
    if labels:
        names = sorted(labels)[:40]
        fig, ax = plt.subplots(figsize=(8, 3.2))
        width = 0.8 / max(1, len(splits))
        for k, s in enumerate(splits):
            c = Counter(label_of(r) for r in records if str(r.get("split")) == s)
            ax.bar(
                [i + k * width for i in range(len(names))], [c[n] for n in names], width, label=s
            )
        ax.set_xticks(
            [i + 0.4 - width / 2 for i in range(len(names))],
            names,
            rotation=45,
            ha="right",
            fontsize=8,
        )
        ax.set_ylabel("records")
        ax.set_title(f"{result.task} labels per split")
        ax.legend(fontsize=8)
        made.append(("label distribution per split", _save(fig, out_dir / f"{stem}-labels.png")))
    durs = [r["duration"] for r in records if isinstance(r.get("duration"), (int, float))]
    if durs:
        fig, ax = plt.subplots(figsize=(8, 3))
        ax.hist(durs, bins=50)
        ax.set_xlabel("duration (s)")
        ax.set_ylabel("records")
        ax.set_title("durations")
        made.append(("durations", _save(fig, out_dir / f"{stem}-durations.png")))
    spk = Counter(str(r["speaker"]) for r in records if r.get("speaker"))
    if spk:
        top = spk.most_common(40)
        fig, ax = plt.subplots(figsize=(8, 3))
        ax.bar(range(len(top)), [n for _, n in top])
        ax.set_xticks(range(len(top)), [s[:12] for s, _ in top], rotation=90, fontsize=6)
        ax.set_ylabel("records")
        ax.set_title(f"records per speaker (top {len(top)} of {len(spk)})")
        made.append(("records per speaker", _save(fig, out_dir / f"{stem}-speakers.png")))
    return made


def _save(fig, path: Path) -> str:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path.name


def write_markdown(
    result: QAResult,
    path: Path,
    plots: list[tuple[str, str]] | None = None,
    command: str | None = None,
) -> Path:
    """The human report: verdict, stats, per-check table, findings (first rows per kind)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    s = result.stats
    verdict = "PASSED" if result.passed else "FAILED"
    lines = [
        f"# QA report: `{Path(result.manifest).name}` for task `{result.task}`",
        "",
        f"**{verdict}** ({'deep' if result.deep else 'cheap'} mode, suite version "
        f"{result.suite_version}, {result.seconds:.1f} s)",
        "",
        f"- manifest: `{_rel(result.manifest, path.parent)}` (sha256 "
        f"`{result.manifest_hash[:16]}`)",
        f"- records: {s['records']}, files: {s['files']}, hours: {s['hours']}, "
        f"speakers: {s['speakers']}, datasets: {', '.join(s['datasets'])}",
        f"- splits: {s['splits']}",
    ]
    if s.get("labels"):
        lines.append(f"- labels: {s['labels']}")
    if command:
        lines.append(f"- reproduce: `{command}`")
    lines += [
        "",
        "## Checks",
        "",
        "| check | what it verifies | errors | warnings | info |",
        "|---|---|---:|---:|---:|",
    ]
    per = defaultdict(Counter)
    for f in result.findings:
        per[f.check.split(".")[0]][f.severity] += 1
    for cid in result.checks_run:
        c = per[cid]
        lines.append(
            f"| {cid} | {CHECKS[cid].description} | {c['error']} | {c['warning']} | {c['info']} |"
        )
    skipped = [c for c in CHECKS if c not in result.checks_run]
    if skipped:
        lines.append(f"\nNot run: {', '.join(skipped)} (deep-only checks need `--deep`).")
    lines += ["", "## Findings", ""]
    if not result.findings:
        lines.append("None.")
    else:
        lines += ["| check | severity | item | expected | got |", "|---|---|---|---|---|"]
        kinds = Counter()
        order = {"error": 0, "warning": 1, "info": 2}
        for f in sorted(result.findings, key=lambda f: (order[f.severity], f.check)):
            kinds[f.check] += 1
            if kinds[f.check] <= ROWS_PER_KIND:
                lines.append(
                    f"| {f.check} | {f.severity} | {_cell(f.item)} | "
                    f"{_cell(f.expected)} | {_cell(f.got)} |"
                )
        more = {k: n - ROWS_PER_KIND for k, n in kinds.items() if n > ROWS_PER_KIND}
        if more:
            lines.append(
                "\nNot listed: "
                + ", ".join(f"{n} more {k}" for k, n in sorted(more.items()))
                + " (see `--json`)."
            )
    if plots:
        lines += ["", "## Plots", ""] + [f"![{t}]({p})" for t, p in plots]
    elif plots is not None:
        lines += ["", "Plots skipped: matplotlib is not installed."]
    write_atomic(path, "\n".join(lines) + "\n")
    return path


def write_json(result: QAResult, path: Path | None) -> str:
    """JSON for machines; to `path`, or returned as a string when path is None."""
    text = json.dumps(result.to_dict(), indent=1, ensure_ascii=False)
    if path is not None:
        write_atomic(path, text + "\n")
    return text
