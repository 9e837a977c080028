"""The training report of the heads: report.md, metrics.json, a learning-curve plot and one
confusion-matrix plot per multi-class task (plots when matplotlib is installed: the `plots`
extra)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .._blas import cpu_model
from .model import HeadsArgs


def _plots(out: Path, summary: dict, args: HeadsArgs) -> list[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    made = []
    h = summary["history"]
    if h:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ep = [r["epoch"] for r in h]
        ax.plot(ep, [r["train_loss"] for r in h], label="train loss")
        ax2 = ax.twinx()
        ax2.plot(ep, [r["valid_score"] for r in h], color="C1", label="valid score")
        ax.set_xlabel("epoch")
        ax.set_ylabel("train loss")
        ax2.set_ylabel("valid score (mean macro-F1 / mAP)")
        fig.legend(loc="upper center", ncol=2, fontsize=8)
        fig.tight_layout()
        p = out / "learning_curve.png"
        fig.savefig(p, dpi=100)
        plt.close(fig)
        made.append(p)
    for spec in args.tasks:
        m = summary["metrics"].get("test", {}).get(spec.name) or summary["metrics"].get(
            "valid", {}
        ).get(spec.name)
        if not m or "confusion" not in m:
            continue
        cm = np.array(m["confusion"])
        fig, ax = plt.subplots(figsize=(1.2 + 0.5 * len(spec.classes),) * 2)
        ax.imshow(cm, cmap="Blues")
        for (i, j), v in np.ndenumerate(cm):
            ax.text(j, i, str(v), ha="center", va="center", fontsize=8)
        ax.set_xticks(range(len(spec.classes)), spec.classes, rotation=45, fontsize=8)
        ax.set_yticks(range(len(spec.classes)), spec.classes, fontsize=8)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(spec.name)
        fig.tight_layout()
        p = out / f"confusion_{spec.name}.png"
        fig.savefig(p, dpi=100)
        plt.close(fig)
        made.append(p)
    return made


def _table(metrics: dict) -> list[str]:
    lines = ["| task | n | accuracy | macro-F1 | mAP | frame accuracy | frame macro-F1 |",
             "|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for task, m in metrics.items():
        fr = m.get("frame", {})

        def f(d, k):
            v = d.get(k)
            return "-" if v is None else f"{v:.3f}"

        lines.append(
            f"| {task} | {m['n']} | {f(m, 'accuracy')} | {f(m, 'macro_f1')} | {f(m, 'mAP')} | "
            f"{f(fr, 'accuracy')} | {f(fr, 'macro_f1')} |"
        )
    return lines


def write_report(
    out: str | Path, summary: dict, args: HeadsArgs, manifest: str | Path, plots: bool = True
) -> dict[str, Path]:
    """Write the report files into `out`; returns {file name: path} (to copy with the weights)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    made = _plots(out, summary, args) if plots else []
    lines = [
        "# Whisper heads: training report",
        "",
        f"Manifest `{manifest}`; tasks {', '.join(args.task_names)}; encoder {args.n_layers} "
        f"layers x {args.n_state}, {args.frame_seconds:.2f} s frames; CPU {cpu_model()}.",
        f"Best epoch {summary['best_epoch']} of {len(summary['history'])} "
        f"(valid score {summary['best_valid_score']:.4f})"
        + (f"; resumed after epoch {summary['resumed_from']}" if summary["resumed_from"] else "")
        + ".",
        "",
    ]
    for t, q in summary["qa"].items():
        ov = q.get("override")
        lines.append(
            f"- QA gate, {t}: {q['state']}"
            + (f" -- OVERRIDDEN: {ov['reason']}" if ov else f" ({q['reason']})")
        )
    for split in ("valid", "test"):
        if summary["metrics"].get(split):
            lines += ["", f"## {split} split", ""] + _table(summary["metrics"][split])
    lines += ["", "## Confusion matrices (rows true, columns predicted)", ""]
    for split in ("valid", "test"):
        for task, m in summary["metrics"].get(split, {}).items():
            if "confusion" in m:
                cls = args.task(task).classes
                lines.append(f"- {split} {task} ({', '.join(cls)}): `{m['confusion']}`")
    if made:
        lines += ["", *[f"![{p.stem}]({p.name})" for p in made]]
    lines += ["", "## Learning curve", "", "| epoch | train loss | valid score |",
              "|---:|---:|---:|"]  # fmt: skip
    lines += [f"| {r['epoch']} | {r['train_loss']:.4f} | {r['valid_score']:.4f} |"
              for r in summary["history"]]  # fmt: skip
    (out / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (out / "metrics.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
    files = {"report.md": out / "report.md", "metrics.json": out / "metrics.json"}
    files.update({p.name: p for p in made})
    return files
