"""`mas transcribe`: speech to text with Whisper (json, txt, srt, vtt)."""

from __future__ import annotations

import sys


def register(sub) -> None:
    from ..progress import add_quiet_flag

    p = sub.add_parser(
        "transcribe",
        help="transcribe audio files with Whisper",
        description="Transcribe audio with a converted Whisper model. With no "
        "file, transcribes the bundled LibriSpeech demo clip.",
    )
    p.add_argument("files", nargs="*", help="audio files (wav/flac/ogg/mp3, any rate/channels)")
    p.add_argument(
        "--model", default=None, help="converted weights folder (default weights/whisper-tiny.en)"
    )
    p.add_argument("--format", default="txt", choices=["json", "txt", "srt", "vtt"])
    p.add_argument("--output", "-o", help="output file (one input) instead of stdout")
    p.add_argument("--output-dir", help="write <stem>.<format> per input into this folder")
    p.add_argument("--language", help="language code (default: detect; 'en' for .en models)")
    p.add_argument("--task", default="transcribe", choices=["transcribe", "translate"])
    p.add_argument("--beam-size", type=int, help="beam search width (default greedy)")
    p.add_argument("--patience", type=float)
    p.add_argument("--length-penalty", type=float)
    p.add_argument("--best-of", type=int, help="samples per fallback temperature")
    p.add_argument("--temperature", type=float, help="single temperature (disables fallback)")
    p.add_argument("--initial-prompt")
    p.add_argument("--no-condition-on-previous-text", action="store_true")
    p.add_argument("--without-timestamps", action="store_true")
    p.add_argument(
        "--word-timestamps",
        action="store_true",
        help="per-word times from the alignment heads (in json output)",
    )
    p.add_argument(
        "--heads",
        help="extra heads folder (`mas train heads` / `mas distill train`) trained on this "
        "model's encoder: per-segment outputs in json, from the same encoder pass",
    )
    p.add_argument(
        "--dtype",
        choices=["float32", "float16", "bfloat16"],
        help="compute dtype (default: float16 on a GPU, float32 on CPU)",
    )
    p.add_argument(
        "--progress",
        action="store_true",
        help="show the progress bar even when stderr is not a terminal",
    )
    add_quiet_flag(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from ..audio import audio_info
    from ..errors import MasError
    from ..formats import render, write_atomic
    from ..models.whisper.load import load_model
    from ..paths import DEMO_CLIP, weights_dir
    from ..progress import show_progress
    from ..weights_get import SOURCES

    files = args.files or [str(DEMO_CLIP)]
    if args.output and len(files) > 1:
        raise MasError("--output takes one input file; use --output-dir for several")
    model_dir = Path(args.model) if args.model else weights_dir() / "whisper-tiny.en"
    if not model_dir.exists():
        name = model_dir.name
        get = f"`mas weights get {name}` or " if name in SOURCES else ""
        raise MasError(
            f"{model_dir}: no converted model; run {get}`mas convert <checkpoint> --out "
            f"{model_dir}` (`mas weights list` shows the names `get` knows)"
        )
    for f in files:  # bad files (FIFO, truncated, empty...) refused before the model loads
        audio_info(f)
    model = load_model(model_dir, args.dtype)
    heads = None
    if args.heads:
        from ..heads.infer import as_heads

        heads = as_heads(args.heads)
    options = {
        k: v
        for k, v in {
            "language": args.language,
            "task": args.task,
            "beam_size": args.beam_size,
            "patience": args.patience,
            "length_penalty": args.length_penalty,
            "best_of": args.best_of,
            "without_timestamps": args.without_timestamps or None,
        }.items()
        if v is not None
    }
    if args.temperature is not None:
        options["temperature"] = args.temperature
    from ..models.whisper.transcribe import transcribe

    for f in files:
        try:
            result = transcribe(
                f,
                model,
                initial_prompt=args.initial_prompt,
                word_timestamps=args.word_timestamps,
                condition_on_previous_text=not args.no_condition_on_previous_text,
                progress=show_progress(args.quiet, force=args.progress),
                heads=heads,
                **options,
            )
        except ValueError as exc:  # invalid decoding options
            raise MasError(f"{f}: {exc}") from exc
        text = render(result, args.format)
        if args.output:
            write_atomic(args.output, text)
        elif args.output_dir:
            write_atomic(Path(args.output_dir) / f"{Path(f).stem}.{args.format}", text)
        else:
            if len(files) > 1 and args.format == "txt":
                sys.stdout.write(f"# {f}\n")
            sys.stdout.write(text)
    return 0
