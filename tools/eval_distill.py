#!/usr/bin/env python
"""Distillation proof for the Whisper heads: does a tiny.en student trained on a whisper-base
teacher's soft labels beat the same student trained on hard labels only, on held-out
speakers, over several seeds? Writes one section of reports/distill.md per task and setting
(between its markers; other sections and reports/heads.md are left alone).

    python tools/eval_distill.py --task speaker_count \
        [--transfer speaker_count/transfer.jsonl] [--seeds 0,1,2] \
        [--temperatures 1,2,4] [--alphas 0.5,0.8]

Arms (the student encoder, head size and training loop are the same in all of them):
- teacher: base heads trained on the hard labels of the labelled manifest's train split
  (one run per --teacher-seeds; the best on valid accuracy is the teacher); with
  --teacher-labels all, on the transfer set's true labels too (a teacher stronger by more
  labelled data, the usual distillation setting; no student sees those labels);
- hard: the student on those hard labels only;
- soft: the student on a * CE(hard) + (1 - a) * T^2 * KL(teacher || student) over the same
  records, plus, with --transfer, the transfer set's records on the teacher's soft labels
  alone (their own labels withheld: `mas distill train --transfer`);
- soft, no transfer (with --transfer only): the soft arm without the transfer set;
- oracle (with --transfer only): the student on the true hard labels of both, the most the
  transfer audio could give; for reference, not a distillation arm.
T and a are chosen on the valid split (mean accuracy over the seeds; valid speakers are
neither train nor test speakers); the test split (held-out speakers) is read only for the
report. Every run's metrics are kept in <work>/results.json: a rerun skips finished runs.

Needs tools/make_heads_data.py's manifests (QA-passed) and the feature caches
<data>/feats/{base,tiny.en}-<name> of each manifest (`mas features cache`), where <name> is
`speaker_count` for mixtures.jsonl and `speaker_count_transfer` for transfer.jsonl.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's package
import numpy as np  # noqa: E402
from _bench import replace_section  # noqa: E402  (a sibling of this script)

import mlx_audio_stack  # noqa: E402, F401  (fast BLAS first)
from mlx_audio_stack._blas import cpu_model as _cpu  # noqa: E402
from mlx_audio_stack.atomic import atomic_output  # noqa: E402
from mlx_audio_stack.data.manifest import read_manifest  # noqa: E402
from mlx_audio_stack.heads.distill import distill_labels, distill_train  # noqa: E402
from mlx_audio_stack.heads.train import TrainConfig, train_heads  # noqa: E402
from mlx_audio_stack.paths import REPO_ROOT  # noqa: E402

MANIFESTS = {"gender": "gender.jsonl", "speaker_count": "speaker_count/mixtures.jsonl"}
MARK = "<!-- distillation {}: tools/eval_distill.py -->", "<!-- /distillation {} -->"


def _stats(xs: list[float]) -> str:
    return f"{np.mean(xs):.3f} ± {np.std(xs):.3f}"


def _per_seed(xs: list[float]) -> str:
    return " / ".join(f"{x:.3f}" for x in xs)


class Runs:
    """Metrics of finished runs by name, kept in a JSON file (written atomically)."""

    def __init__(self, path: Path):
        self.path = path
        self.data = json.loads(path.read_text()) if path.is_file() else {}

    def get(self, name: str, make) -> dict:
        if name not in self.data:
            t = time.perf_counter()
            s = make()
            m = s["metrics"]
            self.data[name] = {
                "valid": {k: v["accuracy"] for k, v in m["valid"].items()},
                "test": {k: v["accuracy"] for k, v in m["test"].items()},
                "test_n": {k: v["n"] for k, v in m["test"].items()},
                "best_epoch": s["best_epoch"],
                "seconds": time.perf_counter() - t,
            }
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_output(self.path) as tmp:
                tmp.write_text(json.dumps(self.data, indent=1) + "\n")
            print(name, self.data[name], flush=True)
        return self.data[name]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO_ROOT / ".mas-cache" / "heads")
    ap.add_argument("--weights", type=Path, default=Path("weights"))
    ap.add_argument("--teacher", default="whisper-base")
    ap.add_argument("--student", default="whisper-tiny.en")
    ap.add_argument("--teacher-seeds", default="0",
                    help="teacher runs; the best on valid accuracy is the teacher")  # fmt: skip
    ap.add_argument("--task", default="speaker_count", choices=sorted(MANIFESTS))
    ap.add_argument("--transfer", help="transfer-set manifest, relative to --data")
    ap.add_argument(
        "--teacher-labels",
        default="labelled",
        choices=["labelled", "all"],
        help="all: the teacher also trains on the transfer set's true labels (a "
        "teacher stronger by more labelled data; the students never see them)",
    )
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--temperatures", default="2", help="T values tried (chosen on valid)")
    ap.add_argument("--alphas", default="0.8", help="a values tried (chosen on valid)")
    ap.add_argument("--select-seeds", help="seeds that try every T and a (default: --seeds); "
                    "the chosen pair then runs with every seed")  # fmt: skip
    ap.add_argument("--no-references", action="store_true",
                    help="without the soft-no-transfer and oracle arms")  # fmt: skip
    ap.add_argument("--report", type=Path, default=REPO_ROOT / "reports" / "distill.md")
    ap.add_argument("--work", type=Path, help="default: <data>/distill-<task>[-transfer]")
    a = ap.parse_args()
    seeds = [int(s) for s in a.seeds.split(",")]
    sel = [int(s) for s in (a.select_seeds or a.seeds).split(",")]
    t_seeds = [int(s) for s in a.teacher_seeds.split(",")]
    temps = [float(x) for x in a.temperatures.split(",")]
    alphas = [float(x) for x in a.alphas.split(",")]
    task, d = a.task, a.data
    all_t = a.teacher_labels == "all"
    if all_t and not a.transfer:
        raise SystemExit("--teacher-labels all needs --transfer")
    tag = task + ("-transfer" if a.transfer else "") + ("-teacher-all" if all_t else "")
    work = a.work or d / f"distill-{tag}"
    runs = Runs(work / "results.json")
    tshort, sshort = a.teacher.removeprefix("whisper-"), a.student.removeprefix("whisper-")
    lab = d / MANIFESTS[task]
    cache = {w: d / "feats" / f"{w}-{task}" for w in (tshort, sshort)}
    tr = d / a.transfer if a.transfer else None
    tcache = {w: d / "feats" / f"{w}-{task}_transfer" for w in (tshort, sshort)}
    t0 = time.perf_counter()

    def cfg(seed: int) -> TrainConfig:
        return TrainConfig(seed=seed, max_epochs=a.epochs)

    # the teacher: one run per --teacher-seeds, the best on valid accuracy labels the data
    t_man = [lab, tr] if all_t else lab
    t_feats = [cache[tshort], tcache[tshort]] if all_t else cache[tshort]
    tms = {ts: runs.get(f"teacher-{ts}", lambda ts=ts: train_heads(
        t_man, [task], a.weights / a.teacher, work / f"teacher-{ts}", features=t_feats,
        cfg=cfg(ts), resume=False, report=False)) for ts in t_seeds}  # fmt: skip
    t_seed = max(t_seeds, key=lambda ts: (tms[ts]["valid"][task], -ts))
    tm, teacher = tms[t_seed], work / f"teacher-{t_seed}"
    if not (teacher / "model.safetensors").is_file():  # results kept, weights gone: again
        train_heads(t_man, [task], a.weights / a.teacher, teacher, features=t_feats,
                    cfg=cfg(t_seed), resume=False, report=False)  # fmt: skip
    hard = [runs.get(f"hard-{s}", lambda s=s: train_heads(
        lab, [task], a.weights / a.student, work / f"hard-{s}", features=cache[sshort],
        cfg=cfg(s), resume=False, report=False)) for s in seeds]  # fmt: skip

    def soft_dir(t: float, which: str) -> Path:
        out = work / f"soft-{which}-T{t:g}"
        man, feats = (lab, cache[tshort]) if which == "labelled" else (tr, tcache[tshort])
        if not (out / "index.json").is_file():
            distill_labels(teacher, man, out, temperature=t, top_k=5, features=feats)
        return out

    def soft_run(t: float, al: float, s: int, transfer: bool) -> dict:
        name = f"soft-T{t:g}-a{al:g}-{s}" + ("" if transfer else "-notransfer")
        return runs.get(name, lambda: distill_train(
            soft_dir(t, "labelled"), a.weights / a.student, work / name,
            features=cache[sshort], cfg=cfg(s), alpha=al, resume=False,
            transfer=soft_dir(t, "transfer") if transfer else None,
            transfer_features=tcache[sshort] if transfer else None))  # fmt: skip

    use_tr = tr is not None
    grid = {(t, al): [soft_run(t, al, s, use_tr) for s in sel] for t in temps for al in alphas}

    def acc(rs: list[dict], split: str) -> list[float]:
        return [r[split][task] for r in rs]

    best = max(grid, key=lambda k: (np.mean(acc(grid[k], "valid")), -list(grid).index(k)))
    soft = [soft_run(*best, s, use_tr) for s in seeds]
    extra = {}
    if use_tr and not a.no_references:
        extra["soft, no transfer set"] = [soft_run(*best, s, False) for s in seeds]
        extra["oracle: hard labels of both"] = [runs.get(f"oracle-{s}", lambda s=s: train_heads(
            [lab, tr], [task], a.weights / a.student, work / f"oracle-{s}",
            features=[cache[sshort], tcache[sshort]], cfg=cfg(s), resume=False,
            report=False)) for s in seeds]  # fmt: skip
    spent = time.perf_counter() - t0

    def soft_stats(which: str, man: Path) -> str:
        """Mean top probability of the teacher's soft labels (at the chosen T) on `man`'s
        train records, and their agreement with the true labels (for the report only)."""
        from mlx_audio_stack.heads.distill import load_soft_labels

        folder = soft_dir(best[0], which)
        ix, lab_ = load_soft_labels(folder)
        classes = ix["tasks"][task]
        rs = [r for r in read_manifest(man).records if r["split"] == "train"]
        p = np.stack([lab_[str(r["id"])][task] for r in rs])
        y = np.array([classes.index(str(r["labels"][task])) for r in rs])
        return (
            f"`{man.name}` train ({len(rs)}): mean top probability {p.max(-1).mean():.3f}, "
            f"argmax = true label {np.mean(p.argmax(-1) == y):.3f}"
        )

    soft_lines = [soft_stats("labelled", lab)] + ([soft_stats("transfer", tr)] if use_tr else [])

    m = read_manifest(lab)
    train_labels = Counter(str(r["labels"][task]) for r in m.records if r["split"] == "train")
    majority = train_labels.most_common(1)[0][0]
    test_recs = [r for r in m.records if r["split"] == "test"]
    valid_recs = [r for r in m.records if r["split"] == "valid"]
    maj = {sp: np.mean([str(r["labels"][task]) == majority for r in rs])
           for sp, rs in (("valid", valid_recs), ("test", test_recs))}  # fmt: skip
    n_spk = len({s for r in test_recs for s in (r.get("speakers") or [r.get("speaker")])})
    n_tr = sum(r["split"] == "train" for r in m.records)
    n_u = len(read_manifest(tr).records) if use_tr else 0
    wins = sum(s > h for s, h in zip(acc(soft, "test"), acc(hard, "test")))
    diff = np.mean(acc(soft, "test")) - np.mean(acc(hard, "test"))
    row = "| {} | {} | {} | {} | {} |"
    rows = [
        row.format("majority class (" + majority + ")", "-", f"{maj['valid']:.3f}",
                   f"{maj['test']:.3f}", "-"),
        row.format(f"teacher ({tshort}, seed {t_seed} of {a.teacher_seeds})",
                   f"hard, {n_tr} labelled" + (f" + {n_u} transfer" if all_t else ""),
                   f"{tm['valid'][task]:.3f}", f"{tm['test'][task]:.3f}", "-"),
        row.format(f"student hard ({sshort})", f"hard, {n_tr} labelled",
                   _stats(acc(hard, "valid")), f"**{_stats(acc(hard, 'test'))}**",
                   _per_seed(acc(hard, "test"))),
        row.format(f"student soft ({sshort}, T = {best[0]:g}, a = {best[1]:g})",
                   f"hard + soft, {n_tr} labelled" + (f" + soft only, {n_u} transfer"
                                                     if use_tr else ""),
                   _stats(acc(soft, "valid")), f"**{_stats(acc(soft, 'test'))}**",
                   _per_seed(acc(soft, "test"))),
    ]  # fmt: skip
    seen = {
        "soft, no transfer set": f"hard + soft, {n_tr} labelled",
        "oracle: hard labels of both": f"hard, {n_tr} labelled + {n_u} transfer",
    }
    for name, rs in extra.items():
        rows.append(row.format(f"student {name}", seen[name], _stats(acc(rs, "valid")),
                               _stats(acc(rs, "test")), _per_seed(acc(rs, "test"))))  # fmt: skip
    grid_rows = [f"| {t:g} | {al:g} | {_stats(acc(rs, 'valid'))} | {_stats(acc(rs, 'test'))} |"
                 + (" chosen |" if (t, al) == best else " |")
                 for (t, al), rs in grid.items()]  # fmt: skip
    tn = tm["test_n"][task]
    BEGIN, END = (mk.format(tag) for mk in MARK)
    cmd = "python tools/eval_distill.py " + shlex.join(sys.argv[1:])
    verdict = (
        f"soft beats hard in {wins} of {len(seeds)} seeds, mean {diff:+.3f} "
        f"({diff * tn:+.1f} of {tn} test items)"
    )
    sec = [
        BEGIN,
        f"## {task}: {sshort} student from the {tshort} teacher's soft labels"
        + (" over a transfer set" if use_tr else "")
        + (" (teacher trained on the transfer set's labels too)" if all_t else ""),
        "",
        f"CPU: {_cpu()} (2 cores shared with other jobs); {spent / 60:.1f} min for the runs "
        "not already in results.json.",
        "",
        "```",
        cmd,
        "```",
        "",
        f"Data: `{lab.relative_to(d)}`, train {n_tr} records (labelled), valid "
        f"{len(valid_recs)}, test {len(test_recs)} ({n_spk} held-out speakers)"
        + (
            f"; transfer set `{a.transfer}`: {n_u} more records of training speakers, labelled "
            "by the teacher; their own labels reach "
            + ("the teacher and the oracle, no student directly" if all_t else "only the oracle")
            if use_tr
            else ""
        )
        + f". Student: {a.student} heads, {a.epochs} epochs max, early stopping on the valid "
        f"macro-F1, seeds {a.seeds}; accuracy = clip-level {task}, mean ± std over seeds.",
        "",
        "| model | labels it trained on | valid accuracy | test accuracy | test per seed |",
        "|---|---|---:|---:|---:|",
        *rows,
        "",
        f"Result: {verdict}.",
        "",
        "Teacher runs, valid / test accuracy: "
        + "; ".join(
            f"seed {ts} {r['valid'][task]:.3f} / {r['test'][task]:.3f}" for ts, r in tms.items()
        )
        + " (the one with the best valid accuracy labels the data). Its soft labels at "
        f"T = {best[0]:g}: " + "; ".join(soft_lines) + ".",
        "",
        f"T and a, tried on the valid split (soft arm, seeds {a.select_seeds or a.seeds}); the "
        "test column was not used for the choice:",
        "",
        "| T | a | valid accuracy | test accuracy | |",
        "|---:|---:|---:|---:|---|",
        *grid_rows,
        END,
    ]
    head = "# Distillation of the Whisper heads (tools/eval_distill.py)\n"
    replace_section(a.report, BEGIN, END, "\n".join(sec), head)
    print("\n".join(sec))
    return 0


if __name__ == "__main__":
    sys.exit(main())
