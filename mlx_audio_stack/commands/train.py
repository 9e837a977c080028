"""`mas train heads ...`: train the Whisper heads on a QA-passed manifest."""

from __future__ import annotations

import sys


def _weights(s: str | None) -> dict[str, float]:
    from ..heads.dataset import HeadsDataError

    out = {}
    for part in (s or "").split(","):
        if not part.strip():
            continue
        k, sep, v = part.partition("=")
        try:
            out[k.strip()] = float(v)
        except ValueError:
            sep = ""
        if not sep:
            raise HeadsDataError(f"--task-weights: expected TASK=WEIGHT, got {part!r}")
    return out


def add_training_args(p) -> None:
    """The training loop's options, shared by `mas train heads` and `mas distill train`."""
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--patience", type=int, default=6)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--warmup-steps", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-resume", action="store_true", help="discard an existing checkpoint")


def train_config(args, **extra):
    """TrainConfig from the options of `add_training_args`."""
    from ..heads.train import TrainConfig

    return TrainConfig(
        seed=args.seed,
        batch_size=args.batch_size,
        lr=args.lr,
        max_epochs=args.epochs,
        patience=args.patience,
        hidden=args.hidden,
        warmup_steps=args.warmup_steps,
        **extra,
    )


def register(sub) -> None:
    from ..progress import add_quiet_flag

    p = sub.add_parser("train", help="train models (the Whisper heads)")
    tsub = p.add_subparsers(dest="train_command", metavar="<model>")
    h = tsub.add_parser(
        "heads",
        help="extra Whisper heads (emotion, paralinguistic, speaker count, gender, rate)",
        description="Refuses to start unless the manifest passed `mas qa run` for every task. "
        "Resumes from <out>.work/checkpoint after a kill.",
    )
    h.add_argument(
        "--manifest",
        required=True,
        action="append",
        help="QA-passed manifest; repeat it for one manifest per task (each is gated for the "
        "tasks it labels)",
    )
    h.add_argument("--tasks", required=True, help="comma-separated, e.g. speaker_count,gender")
    h.add_argument("--model", required=True, help="converted Whisper weights folder (encoder)")
    h.add_argument("--out", required=True, help="output weights folder")
    h.add_argument("--features", action="append", help="feature cache of each --manifest "
                   "(`mas features cache`); default: built into <out>.work/")  # fmt: skip
    add_training_args(h)
    h.add_argument("--task-weights", help="loss weight per task, e.g. gender=1,speaker_count=2")
    h.add_argument(
        "--skip-qa",
        metavar="REASON",
        help="train although the QA gate refuses (an experiment); the reason is logged and "
        "stored with the weights",
    )
    add_quiet_flag(h)
    h.set_defaults(func=run_heads)
    p.set_defaults(func=lambda a: p.print_help() or 2)


def run_heads(args) -> int:
    from ..heads.train import train_heads
    from ..progress import show_progress

    cfg = train_config(args, task_weights=_weights(args.task_weights))
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    if args.skip_qa:
        print(f"WARNING: QA GATE SKIPPED ({args.skip_qa}); this run trains on unchecked data",
              file=sys.stderr)  # fmt: skip
    s = train_heads(
        args.manifest if len(args.manifest) > 1 else args.manifest[0],
        tasks,
        args.model,
        args.out,
        features=args.features
        if args.features and len(args.features) > 1
        else (args.features or [None])[0],
        cfg=cfg,
        skip_qa=args.skip_qa,
        resume=not args.no_resume,
        progress=show_progress(args.quiet),
    )
    from ..heads.parallel import default_group

    g = default_group()
    if g is not None and g.rank() != 0:
        return 0  # rank 0 reports for the group
    print(f"{args.out}: best epoch {s['best_epoch']}, valid score {s['best_valid_score']:.4f}")
    for split in ("valid", "test"):
        for task, m in s["metrics"].get(split, {}).items():
            score = f"accuracy {m['accuracy']:.3f}" if "accuracy" in m else f"mAP {m['mAP']:.3f}"
            print(f"  {split} {task}: {score} (n={m['n']})")
    return 0
