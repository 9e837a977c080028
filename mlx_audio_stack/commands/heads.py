"""`mas heads predict FILE --heads DIR`: the extra Whisper heads alone, per window and frame."""

from __future__ import annotations

import json
import sys


def register(sub) -> None:
    p = sub.add_parser("heads", help="run the extra Whisper heads alone")
    hsub = p.add_subparsers(dest="heads_command", metavar="<action>")
    pr = hsub.add_parser(
        "predict",
        help="head outputs per 30 s window, and per 0.1 s frame for frame-level tasks "
        "(speaker count)",
        description="Runs the encoder the heads were trained on (weights/<its name>, or "
        "--model) once per 30 s window and prints JSON.",
    )
    pr.add_argument("file", help="audio file")
    pr.add_argument("--heads", required=True, help="heads folder")
    pr.add_argument("--model", help="Whisper weights of the heads' encoder")
    pr.add_argument("--output", "-o", help="write the JSON here instead of stdout")
    pr.add_argument("--dtype", choices=["float32", "float16", "bfloat16"])
    pr.set_defaults(func=run_predict)
    p.set_defaults(func=lambda a: p.print_help() or 2)


def run_predict(args) -> int:
    from ..audio import audio_info
    from ..formats import write_atomic
    from ..heads.infer import predict_heads

    audio_info(args.file)  # a bad file is refused before the model loads
    res = predict_heads(args.file, args.heads, model=args.model, dtype=args.dtype)
    text = json.dumps({"file": args.file, **res}, indent=1) + "\n"
    if args.output:
        write_atomic(args.output, text)
    else:
        sys.stdout.write(text)
    return 0
