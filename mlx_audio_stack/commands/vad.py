"""`mas vad FILE...`: speech segments with Silero VAD (MLX)."""

from __future__ import annotations

import math


def register(sub) -> None:
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
    p.set_defaults(func=run)


def run(args) -> int:
    from tqdm import tqdm

    from ..errors import WeightsError
    from ..models.silero_vad.load import load_vad
    from ..models.silero_vad.output import FORMATS, vad_file
    from ..paths import weights_dir

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
    results = [
        vad_file(f, model, model_sample_rate=args.branch, **options)
        for f in tqdm(args.files, desc="vad", unit="file", disable=len(args.files) < 5)
    ]
    text = FORMATS[args.format](results)
    if args.output:
        from ..formats import write_atomic

        write_atomic(args.output, text + "\n" if text else "")
    elif text:
        print(text)
    return 0
