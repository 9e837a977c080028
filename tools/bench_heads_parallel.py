#!/usr/bin/env python
"""Data-parallel heads training: `mas train heads` as 1 process and under `mlx.launch -n N`
(ring backend, local processes), same global batch, from cached features; training records
per second and the final metrics of both. Writes its section of reports/heads.md.

    python tools/bench_heads_parallel.py \
        [--manifest .mas-cache/heads/gender.jsonl] \
        [--features .mas-cache/heads/feats/tiny.en-gender]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's package
from _bench import replace_section  # noqa: E402  (a sibling of this script)

from mlx_audio_stack._blas import cpu_model as _cpu  # noqa: E402
from mlx_audio_stack.paths import REPO_ROOT  # noqa: E402

BEGIN, END = "<!-- heads-parallel: tools/bench_heads_parallel.py -->", "<!-- /heads-parallel -->"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    c = REPO_ROOT / ".mas-cache" / "heads"
    ap.add_argument("--manifest", type=Path, default=c / "gender.jsonl")
    ap.add_argument("--features", type=Path, default=c / "feats" / "tiny.en-gender")
    ap.add_argument("--model", type=Path, default=Path("weights/whisper-tiny.en"))
    ap.add_argument("--task", default="gender")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("-n", type=int, default=2)
    ap.add_argument("--report", type=Path, default=REPO_ROOT / "reports" / "heads.md")
    a = ap.parse_args()
    work = c / "bench-parallel"
    base = [sys.executable, "-m", "mlx_audio_stack", "train", "heads", "--manifest",
            str(a.manifest), "--tasks", a.task, "--model", str(a.model), "--features",
            str(a.features), "--epochs", str(a.epochs), "--patience", "1000", "--no-resume",
            "-q"]  # fmt: skip
    launch = Path(sys.executable).with_name("mlx.launch")
    runs = {}
    for name, pre in (("1 process", []),
                      (f"mlx.launch -n {a.n}", [str(launch), "-n", str(a.n), "--backend",
                                                "ring", "--"])):  # fmt: skip
        out = work / name.replace(" ", "_")
        shutil.rmtree(out, ignore_errors=True)
        t = time.perf_counter()
        subprocess.run([*pre, *base, "--out", str(out)], cwd=REPO_ROOT, check=True)
        runs[name] = (time.perf_counter() - t, json.loads((out / "metrics.json").read_text()))
    n_train = sum(1 for line in a.manifest.read_text().splitlines() if '"split": "train"' in line)
    rows = []
    for name, (secs, m) in runs.items():
        acc = m["metrics"]["test"][a.task]["accuracy"]
        rows.append(f"| {name} | {secs:.1f} | {n_train * a.epochs / secs:.1f} | {acc:.3f} |")
    block = "\n".join([
        BEGIN,
        "## Data-parallel training (tools/bench_heads_parallel.py)",
        "",
        f"CPU: {_cpu()} (2 cores shared with other jobs). `mas train heads --tasks {a.task}` "
        f"on {a.features.name}, {a.epochs} epochs, batch 32 (global), wall time of the whole "
        "command (start-up and evaluation included).",
        "",
        "| run | wall s | train-split records x epochs / s | test accuracy |",
        "|---|---:|---:|---:|",
        *rows,
        "",
        "On 2 shared cores two processes cannot run faster than one; the point here is that "
        "they reach the same model (tests/test_heads_parallel.py: weights within 1e-5).",
        END,
    ])  # fmt: skip
    replace_section(a.report, BEGIN, END, block)
    print(block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
