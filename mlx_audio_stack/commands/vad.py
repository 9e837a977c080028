"""`mas vad FILE...`: speech segments with Silero VAD (MLX)."""

from __future__ import annotations

import math


def register(sub) -> None:
    from ..progress import add_quiet_flag

    p = sub.add_parser(
        "vad",
        help="voice activity detection (Silero VAD) -> speech segments",
        description="Find speech segments in audio files with Silero VAD. "
        "Options are those of silero's get_speech_timestamps.",
    )
    p.add_argument(
        "files",
        nargs="+",
        help="audio files (any rate; 16/8 kHz run natively, others are resampled to 16 kHz)",
    )
    p.add_argument(
        "--model",
        help="converted weights folder (default weights/silero-vad; "
        "create it with `mas weights get silero-vad`)",
    )
    p.add_argument("--format", default="json", choices=["json", "txt", "rttm"])
    p.add_argument("--output", "-o", help="write to this file instead of stdout")
    p.add_argument(
        "--branch",
        type=int,
        choices=[16000, 8000],
        help="run this branch (the audio is resampled to its rate)",
    )
    p.add_argument("--threshold", type=float, default=0.5, help="speech probability threshold")
    p.add_argument(
        "--neg-threshold",
        type=float,
        default=None,
        help="end-of-speech threshold (default threshold - 0.15)",
    )
    p.add_argument("--min-speech-duration-ms", type=float, default=250)
    p.add_argument("--min-silence-duration-ms", type=float, default=100)
    p.add_argument("--speech-pad-ms", type=float, default=30)
    p.add_argument("--max-speech-duration-s", type=float, default=math.inf)
    add_quiet_flag(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from tqdm import tqdm

    from ..errors import WeightsError
    from ..models.silero_vad.load import load_vad
    from ..models.silero_vad.output import FORMATS, vad_file
    from ..paths import weights_dir
    from ..progress import show_progress

    model_dir = args.model or weights_dir() / "silero-vad"
    if not args.model and not (weights_dir() / "silero-vad").exists():
        raise WeightsError(
            f"{model_dir}: no Silero VAD weights; run `mas weights get silero-vad` or pass --model"
        )
    model = load_vad(model_dir)
    options = dict(
        threshold=args.threshold,
        neg_threshold=args.neg_threshold,
        min_speech_duration_ms=args.min_speech_duration_ms,
        min_silence_duration_ms=args.min_silence_duration_ms,
        speech_pad_ms=args.speech_pad_ms,
        max_speech_duration_s=args.max_speech_duration_s,
    )
    results = []
    show = show_progress(args.quiet)
    # the bar counts seconds of audio over all files (a header read each: cheap)
    seconds = [_duration(f) for f in args.files] if show else [0.0] * len(args.files)
    fmt = "{l_bar}{bar}| {n:.0f}/{total:.0f} s audio [{elapsed}<{remaining}]"
    with tqdm(total=sum(seconds), desc="vad", bar_format=fmt, disable=not show) as bar:
        for f, sec in zip(args.files, seconds):
            results.append(vad_file(f, model, model_sample_rate=args.branch, **options))
            bar.update(sec)
    text = FORMATS[args.format](results)
    if args.output:
        from ..formats import write_atomic

        write_atomic(args.output, text + "\n" if text else "")
    elif text:
        print(text)
    return 0


def _duration(path: str) -> float:
    """Seconds of audio in `path` from its header (0 when unreadable: vad_file names it)."""
    import soundfile as sf

    try:
        info = sf.info(path)
        return info.frames / info.samplerate
    except Exception:  # the error is vad_file's to report, with the file's name
        return 0.0
