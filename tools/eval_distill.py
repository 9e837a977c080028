#!/usr/bin/env python
"""Distillation proof for the Whisper heads: a whisper-base teacher's soft labels train a
tiny.en student; the same student trained on hard labels only is the baseline. Held-out
speakers (the test split), several seeds; writes the "Distillation" section of
reports/heads.md (between its markers; the rest of the file is kept).

    python tools/eval_distill.py [--tasks gender,speaker_count]

Needs tools/make_heads_data.py's manifests (QA-passed) and four feature caches:
    mas features cache .mas-cache/heads/gender.jsonl --model W/whisper-base \
        --out .mas-cache/heads/feats/base-gender          (and tiny.en-gender,
        base-speaker_count, tiny.en-speaker_count from speaker_count/mixtures.jsonl)
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's package
import numpy as np  # noqa: E402

import mlx_audio_stack  # noqa: E402, F401  (fast BLAS first)
from mlx_audio_stack.heads.distill import distill_labels, distill_train  # noqa: E402
from mlx_audio_stack.heads.report import _cpu  # noqa: E402
from mlx_audio_stack.heads.train import TrainConfig, train_heads  # noqa: E402
from mlx_audio_stack.paths import REPO_ROOT  # noqa: E402

MANIFESTS = {"gender": "gender.jsonl", "speaker_count": "speaker_count/mixtures.jsonl"}
MARK = "<!-- distillation {}: tools/eval_distill.py -->", "<!-- /distillation {} -->"


def _stats(xs: list[float]) -> str:
    return f"{np.mean(xs):.3f} ± {np.std(xs):.3f} (min {min(xs):.3f}, max {max(xs):.3f})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO_ROOT / ".mas-cache" / "heads")
    ap.add_argument("--weights", type=Path, default=Path("weights"))
    ap.add_argument("--teacher", default="whisper-base")
    ap.add_argument("--student", default="whisper-tiny.en")
    ap.add_argument("--tasks", default="gender,speaker_count")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--alpha", type=float, default=0.8)
    ap.add_argument("--temperature", type=float, default=2.0)
    ap.add_argument("--report", type=Path, default=REPO_ROOT / "reports" / "heads.md")
    ap.add_argument("--work", type=Path, help="default: <data>/distill")
    ap.add_argument("--joint-teacher", action="store_true",
                    help="one teacher trained on all --tasks' manifests together")  # fmt: skip
    a = ap.parse_args()
    seeds = [int(s) for s in a.seeds.split(",")]
    BEGIN, END = (m.format(a.tasks) for m in MARK)  # one section per task list
    tshort, sshort = a.teacher.removeprefix("whisper-"), a.student.removeprefix("whisper-")
    work = a.work or a.data / "distill"
    rows, notes = [], []
    t0 = time.perf_counter()
    tasks = a.tasks.split(",")
    joint = None
    if a.joint_teacher:  # one teacher on every task's manifest, as tools/eval_heads.py trains
        joint = train_heads([a.data / MANIFESTS[t] for t in tasks], tasks, a.weights / a.teacher,
                            work / "teacher-joint", resume=False, report=False,
                            features=[a.data / "feats" / f"{tshort}-{t}" for t in tasks],
                            cfg=TrainConfig(seed=0, max_epochs=a.epochs))  # fmt: skip
    for task in tasks:
        man = a.data / MANIFESTS[task]
        tf, sf = a.data / "feats" / f"{tshort}-{task}", a.data / "feats" / f"{sshort}-{task}"
        cfg = TrainConfig(seed=0, max_epochs=a.epochs)
        teacher = work / ("teacher-joint" if joint else f"teacher-{task}")
        ts = joint or train_heads(man, [task], a.weights / a.teacher, teacher, features=tf,
                                  cfg=cfg, resume=False, report=False)  # fmt: skip
        soft = work / f"soft-{task}"
        distill_labels(teacher, man, soft, temperature=a.temperature, top_k=5, features=tf)
        res = {"hard": [], "soft": []}
        for seed in seeds:
            c = TrainConfig(seed=seed, max_epochs=a.epochs)
            h = train_heads(man, [task], a.weights / a.student, work / f"hard-{task}-{seed}",
                            features=sf, cfg=c, resume=False, report=False)  # fmt: skip
            s = distill_train(soft, a.weights / a.student, work / f"soft-{task}-{seed}",
                              features=sf, cfg=c, alpha=a.alpha, resume=False)  # fmt: skip
            res["hard"].append(h["metrics"]["test"][task]["accuracy"])
            res["soft"].append(s["metrics"]["test"][task]["accuracy"])
            print(task, seed, res["hard"][-1], res["soft"][-1], flush=True)
        n = ts["metrics"]["test"][task]["n"]
        t_acc = ts["metrics"]["test"][task]["accuracy"]
        rows.append(f"| {task} | {n} | {t_acc:.3f} | {_stats(res['hard'])} | "
                    f"{_stats(res['soft'])} | {' / '.join(f'{x:.3f}' for x in res['hard'])} | "
                    f"{' / '.join(f'{x:.3f}' for x in res['soft'])} |")  # fmt: skip
        wins = sum(s > h for h, s in zip(res["hard"], res["soft"]))
        notes.append(f"- {task}: soft beats hard in {wins} of {len(seeds)} seeds "
                     f"(mean {np.mean(res['soft']) - np.mean(res['hard']):+.3f}).")  # fmt: skip
    spent = time.perf_counter() - t0
    cmd = "python tools/eval_distill.py " + " ".join(shlex.quote(x) for x in sys.argv[1:])
    sec = [
        BEGIN,
        f"## Distillation ({a.tasks}): {sshort} student from the {tshort} teacher's soft labels",
        "",
        f"CPU: {_cpu()} (2 cores shared with other jobs; `nice -n 10`); {spent / 60:.1f} min.",
        f"Teacher: {a.teacher} heads (seed 0) trained on hard labels"
        f"{' of all these tasks together' if a.joint_teacher else ', this task alone'}; "
        f"soft labels at "
        f"T = {a.temperature}, top-5 + rest mass (`mas distill labels`). Student: "
        f"{a.student} heads, {a.epochs} epochs max, early stopping on the valid split, "
        f"trained either on hard labels only (`mas train heads`) or with "
        f"{a.alpha} * CE + {1 - a.alpha:.1f} * T^2 * KL (`mas distill train`). Test split = "
        "held-out speakers; accuracy per seed (mean ± std over seeds).",
        "",
        "```",
        cmd,
        "```",
        "",
        "| task | test n | teacher | student, hard labels | student, soft labels | hard per seed "
        "| soft per seed |",
        "|---|---:|---:|---|---|---|---|",
        *rows,
        "",
        *notes,
        END,
    ]
    text = a.report.read_text(encoding="utf-8") if a.report.is_file() else ""
    pat = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.S)
    block = "\n".join(sec)
    text = pat.sub(lambda _: block, text) if pat.search(text) else text.rstrip() + "\n\n" + block
    a.report.write_text(text.rstrip() + "\n", encoding="utf-8")
    print("\n".join(sec))
    return 0


if __name__ == "__main__":
    sys.exit(main())
