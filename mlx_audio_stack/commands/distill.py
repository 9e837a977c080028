"""`mas distill labels|train`: soft labels from teacher heads, student heads trained on them."""

from __future__ import annotations

import sys


def register(sub) -> None:
    from ..progress import add_quiet_flag
    from .train import add_training_args

    p = sub.add_parser("distill", help="soft-label distillation of the Whisper heads")
    dsub = p.add_subparsers(dest="distill_command", metavar="<action>")
    lab = dsub.add_parser(
        "labels",
        help="teacher probabilities at temperature T, top-k + rest mass per record",
        description="Refuses unless the manifest passed `mas qa run` for every teacher task. "
        "Resumable (finished shards are skipped); under `mlx.launch -n N` each process makes "
        "every N-th shard.",
    )
    lab.add_argument("--teacher", required=True, help="teacher heads folder (`mas train heads`)")
    lab.add_argument("--manifest", required=True, help="QA-passed manifest")
    lab.add_argument("--out", required=True, help="soft-label folder")
    lab.add_argument("--temperature", type=float, default=2.0)
    lab.add_argument("--top-k", type=int, default=5)
    lab.add_argument("--model", help="the teacher's Whisper encoder weights "
                     "(default: weights/<the encoder named in the teacher's config>)")  # fmt: skip
    lab.add_argument("--features", help="feature cache of the manifest with that encoder")
    lab.add_argument("--shard-size", type=int, default=64, help="records per shard")
    lab.add_argument("--skip-qa", metavar="REASON", help="run although the QA gate refuses")
    add_quiet_flag(lab)
    lab.set_defaults(func=run_labels)
    tr = dsub.add_parser(
        "train",
        help="student heads: a * CE(hard) + (1 - a) * T^2 * KL(teacher || student)",
        description="Trains through `mas train heads`' loop (checkpoints, resume, report) on "
        "the soft labels' manifest, which must pass the QA gate.",
    )
    tr.add_argument("--soft", required=True, help="soft-label folder (`mas distill labels`)")
    tr.add_argument("--model", required=True, help="the student's Whisper weights folder")
    tr.add_argument("--out", required=True, help="output heads folder")
    tr.add_argument("--features", help="feature cache of the manifest with the student encoder")
    tr.add_argument("--alpha", type=float, default=0.8, help="weight of the hard-label loss")
    tr.add_argument("--temperature", type=float, help="default: the soft labels' T")
    tr.add_argument("--transfer", help="soft-label folder of a transfer set: its records train "
                    "on the teacher's labels alone (their own labels are withheld)")  # fmt: skip
    tr.add_argument("--transfer-features", help="feature cache of the transfer manifest with "
                    "the student encoder")  # fmt: skip
    add_training_args(tr)
    tr.add_argument("--skip-qa", metavar="REASON", help="train although the QA gate refuses")
    add_quiet_flag(tr)
    tr.set_defaults(func=run_train)
    p.set_defaults(func=lambda a: p.print_help() or 2)


def run_labels(args) -> int:
    from ..heads.distill import distill_labels
    from ..progress import show_progress

    if args.skip_qa:
        print(f"WARNING: QA GATE SKIPPED ({args.skip_qa})", file=sys.stderr)
    ix = distill_labels(
        args.teacher,
        args.manifest,
        args.out,
        temperature=args.temperature,
        top_k=args.top_k,
        model=args.model,
        features=args.features,
        shard_size=args.shard_size,
        skip_qa=args.skip_qa,
        progress=show_progress(args.quiet),
    )
    print(f"{args.out}: {ix['n_records']} records, {len(ix['shards'])} shards, tasks "
          f"{','.join(ix['tasks'])}, T {ix['temperature']}, top-{ix['top_k']}")  # fmt: skip
    return 0


def run_train(args) -> int:
    from ..heads.distill import distill_train
    from ..progress import show_progress
    from .train import train_config

    cfg = train_config(args)
    if args.skip_qa:
        print(f"WARNING: QA GATE SKIPPED ({args.skip_qa})", file=sys.stderr)
    s = distill_train(args.soft, args.model, args.out, features=args.features, cfg=cfg,
                      alpha=args.alpha, temperature=args.temperature, skip_qa=args.skip_qa,
                      resume=not args.no_resume, progress=show_progress(args.quiet),
                      transfer=args.transfer,
                      transfer_features=args.transfer_features)  # fmt: skip
    print(f"{args.out}: best epoch {s['best_epoch']}, valid score {s['best_valid_score']:.4f}")
    for split in ("valid", "test"):
        for task, m in s["metrics"].get(split, {}).items():
            print(f"  {split} {task}: accuracy {m['accuracy']:.3f} (n={m['n']})")
    return 0
