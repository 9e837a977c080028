"""`mas convert`: any supported checkpoint -> MLX weights folder."""

from __future__ import annotations

from pathlib import Path

# the converters' model types, one module each: mlx_audio_stack/convert/<type>.py, listed
# without importing them (a test checks this equals convert.model_types())
MODEL_TYPES = sorted(
    f.stem
    for f in (Path(__file__).resolve().parent.parent / "convert").glob("*.py")
    if not f.stem.startswith("_") and f.stem != "torch_pickle"
)


def register(sub) -> None:
    from ..progress import add_quiet_flag

    p = sub.add_parser(
        "convert",
        help="convert a checkpoint (path or hub repo id) to MLX",
        description="Convert a PyTorch/CTranslate2/TorchScript/safetensors "
        "checkpoint into weights/<name>/ (model.safetensors + "
        "config.json). The model type is auto-detected.",
    )
    p.add_argument("src", help="checkpoint file or folder, or a Hugging Face repo id")
    p.add_argument("--out", required=True, help="output folder, e.g. weights/whisper-tiny.en")
    p.add_argument(
        "--model",
        choices=MODEL_TYPES,
        help="force the model type (default: detected from the source)",
    )
    p.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    p.add_argument("--quantize", type=int, choices=[4, 8], help="group-wise quantization bits")
    p.add_argument("--group-size", type=int, default=64)
    p.add_argument("--force", action="store_true", help="overwrite an existing output folder")
    add_quiet_flag(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..convert import convert
    from ..progress import show_progress

    out = convert(
        args.src,
        args.out,
        model=args.model,
        dtype=args.dtype,
        quantize=args.quantize,
        group_size=args.group_size,
        force=args.force,
        progress=show_progress(args.quiet),
    )
    print(f"wrote {out}")
    return 0
