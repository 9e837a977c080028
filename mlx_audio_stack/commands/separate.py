"""`mas separate`: split a mixture into one file per speaker with MossFormer2."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser(
        "separate",
        help="separate overlapping speakers (MossFormer2)",
        description="Separate a mixture into <out>/spk1.wav, spk2.wav[, "
        "spk3.wav] at the model's sample rate. Any input rate or "
        "channel count is mixed to mono and resampled. Input "
        "longer than 20 s is streamed from disk in overlapping "
        "windows (bounded memory).",
    )
    p.add_argument("audio", help="input audio file")
    p.add_argument("--model", required=True, help="converted MossFormer2 folder")
    p.add_argument("--out", required=True, help="output folder for spk1.wav ...")
    p.add_argument("--num-spks", type=int, help="fail unless the model separates this many")
    p.add_argument(
        "--chunk",
        type=float,
        default=None,
        help="window seconds (default: one pass up to 20 s, else 8 s windows)",
    )
    p.add_argument("--overlap", type=float, default=1.0, help="window overlap seconds")
    p.add_argument(
        "--normalize",
        action="store_true",
        help="rescale each source to the mixture's RMS, as ClearerVoice does (one-pass input only)",
    )
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    import soundfile as sf

    from ..audio import _open_info
    from ..models.mossformer2 import load_model, separate
    from ..models.mossformer2.io import separate_file_streaming, write_sources
    from ..models.mossformer2.separate import CHUNK_S, ONE_PASS_S

    info = _open_info(Path(args.audio))
    model = load_model(args.model, num_spks=args.num_spks)
    sr = model.sample_rate
    if info.samplerate != sr or info.channels != 1:
        print(f"input: {info.channels} channel(s) at {info.samplerate} Hz -> mono {sr} Hz")
    duration = info.frames / info.samplerate
    long_input = duration > (args.chunk or ONE_PASS_S)
    if long_input:
        if args.normalize:
            print("--normalize: ignored for streamed input (needs the whole file's RMS)")
        paths = separate_file_streaming(
            args.audio, model, args.out, args.chunk or CHUNK_S, args.overlap, progress=True
        )
    else:
        sources = separate(args.audio, model, normalize=args.normalize)
        paths = write_sources(sources, args.out, sr)
    for path in paths:
        print(f"wrote {path} ({sf.info(str(path)).duration:.2f} s)")
    return 0
