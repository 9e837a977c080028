"""`mas qa run|status`: the data-QA suite over a manifest, and the gate's stored verdict."""

from __future__ import annotations

import shlex
import sys


def register(sub) -> None:
    p = sub.add_parser("qa", help="data-QA suite and gate status for a manifest")
    qsub = p.add_subparsers(dest="qa_command", metavar="<action>")
    r = qsub.add_parser(
        "run",
        help="run the suite; exit 0 only if it passes",
        description="Runs every check for TASK and stores the verdict that "
        "training entry points (require_qa) read.",
    )
    r.add_argument("manifest")
    r.add_argument(
        "--task",
        required=True,
        help="asr, emotion, paralinguistic, speaker_count, "
        "gender, speaking_rate, speaker_id, audio, diarization, separation",
    )
    r.add_argument("--deep", action="store_true", help="decode every segment")
    r.add_argument(
        "--report-dir", default="reports/qa", help="markdown + PNG report folder ('' to skip)"
    )
    r.add_argument(
        "--json",
        nargs="?",
        const="-",
        metavar="PATH",
        help="write the full result as JSON (to PATH, or stdout)",
    )
    r.add_argument(
        "--probs",
        help="out-of-sample predicted probabilities (.npy/.jsonl) for the "
        "label-error check (--deep)",
    )
    r.add_argument("--fail-on-label-errors", action="store_true")
    r.add_argument(
        "--tokenizer",
        choices=["estimate", "whisper", "whisper-en"],
        default="estimate",
        help="token counts for the 448-token limit",
    )
    r.add_argument(
        "--mapping",
        help="module:function label mapping to test for determinism (default: the taxonomy's)",
    )
    r.add_argument("--no-plots", action="store_true")
    r.add_argument("--quiet", action="store_true", help="no progress bars, no finding lines")
    r.set_defaults(func=run_run)
    s = qsub.add_parser("status", help="passed / failed / stale / unchecked, and why")
    s.add_argument("manifest")
    s.add_argument("--task", help="one task (default: every task stored for the manifest)")
    s.set_defaults(func=run_status)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def run_run(args) -> int:
    from ..data import run_qa
    from ..progress import show_progress

    count = None
    if args.tokenizer != "estimate":
        from ..data.gate import suite

        suite()
        from data_quality.checks.limits import whisper_token_counter

        count = whisper_token_counter(multilingual=args.tokenizer == "whisper")
    json_to = None if args.json in (None, "-") else args.json
    cmd = (
        "mas qa run " + " ".join(shlex.quote(a) for a in sys.argv[3:])
        if sys.argv[1:3] == ["qa", "run"]
        else None
    )
    res = run_qa(
        args.manifest,
        args.task,
        deep=args.deep,
        report_dir=args.report_dir or None,
        json_path=json_to,
        probs=args.probs,
        count_tokens=count,
        mapping_fn=args.mapping,
        fail_on_label_errors=args.fail_on_label_errors,
        plots=not args.no_plots,
        progress=show_progress(args.quiet),
        command=cmd,
    )
    if args.json == "-":
        from data_quality.report import write_json

        print(write_json(res, None))
        return 0 if res.passed else 1
    if not args.quiet:
        shown = [f for f in res.findings if f.severity != "info"]
        for f in shown[:30]:
            print(f.line())
        if len(shown) > 30:
            print(f"... {len(shown) - 30} more (see the report or --json)")
    verdict = "PASSED" if res.passed else "FAILED (" + ", ".join(res.failed_checks) + ")"
    print(
        f"{args.manifest}: QA {verdict} for task {args.task}: {len(res.findings)} findings, "
        f"{res.stats['records']} records, {res.seconds:.1f} s"
    )
    return 0 if res.passed else 1


def run_status(args) -> int:
    from ..data.gate import qa_status, status_path, stored_tasks

    tasks = [args.task] if args.task else stored_tasks(args.manifest)
    if not tasks:
        st = qa_status(args.manifest, "-")  # says why: no file, or a broken one
        where = status_path(args.manifest)
        why = st.reason if "verdict" in st.reason else f"no QA run stored at {where}"
        print(f"{args.manifest}: unchecked ({why})")
        return 1
    ok = True
    for t in tasks:
        st = qa_status(args.manifest, t)
        print(f"{args.manifest} [{t}]: {st.state}: {st.reason}")
        ok &= st.state == "passed"
    return 0 if ok else 1
