"""`mas separate`: split a mixture into one file per speaker with MossFormer2."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser(
        "separate",
        help="separate overlapping speakers (MossFormer2)",
        description="Separate a mixture into sources/spk1.wav, spk2.wav[, "
        "spk3.wav] at the model's sample rate. Any input rate or "
        "channel count is mixed to mono and resampled.",
    )
    p.add_argument("audio", help="input audio file")
    p.add_argument("--model", required=True, help="converted MossFormer2 folder")
    p.add_argument("--out", required=True, help="output folder for spk1.wav ...")
    p.add_argument("--num-spks", type=int, help="fail unless the model separates this many")
    p.add_argument(
        "--chunk",
        type=float,
        default=None,
        help="window seconds for chunked inference (default: one pass up to 20 s)",
    )
    p.add_argument("--overlap", type=float, default=1.0, help="window overlap seconds")
    p.add_argument(
        "--normalize",
        action="store_true",
        help="rescale each source to the mixture's RMS (as ClearerVoice does)",
    )
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    import soundfile as sf

    from ..models.mossformer2 import load_model
    from ..models.mossformer2.io import write_sources

    model = load_model(args.model, num_spks=args.num_spks)
    info = sf.info(args.audio) if Path(args.audio).is_file() else None
    from ..models.mossformer2 import separate

    sources = separate(
        args.audio,
        model,
        chunk_s=args.chunk,
        overlap_s=args.overlap,
        normalize=args.normalize,
        progress=True,
    )
    if info is not None and (info.samplerate != model.sample_rate or info.channels != 1):
        print(
            f"input: {info.channels} channel(s) at {info.samplerate} Hz -> mono "
            f"{model.sample_rate} Hz"
        )
    for path in write_sources(sources, args.out, model.sample_rate):
        print(f"wrote {path}")
    return 0
