"""`mas embed` (speaker embeddings) and `mas verify` (same speaker or not?)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

DEFAULT_MODEL = "ecapa-voxceleb"


def _model_path(arg: str | None) -> Path:
    from ..paths import weights_dir

    return Path(arg) if arg else weights_dir() / DEFAULT_MODEL


def register(sub) -> None:
    p = sub.add_parser(
        "embed",
        help="speaker embeddings (ECAPA-TDNN) of audio files",
        description="One 192-d speaker embedding per audio file (any rate: resampled to 16 kHz).",
    )
    p.add_argument("audio", nargs="+", help="audio files")
    p.add_argument("--model", help=f"converted ECAPA folder (default weights/{DEFAULT_MODEL})")
    p.add_argument(
        "--format",
        default="json",
        choices=["json", "npy", "txt"],
        help="json lines {file, embedding} (default), npy (needs --out), txt rows",
    )
    p.add_argument("--out", help="output file (default: stdout; required for npy)")
    p.add_argument(
        "--normalize",
        action="store_true",
        help="subtract the global embedding mean (mean_var_norm_emb)",
    )
    p.add_argument("--batch-size", type=int, default=8)
    p.set_defaults(func=run_embed)

    v = sub.add_parser(
        "verify",
        help="cosine score of two recordings: same speaker?",
        description="Cosine similarity of the two files' ECAPA embeddings "
        "and the decision score > threshold.",
    )
    v.add_argument("a")
    v.add_argument("b")
    v.add_argument("--model", help=f"converted ECAPA folder (default weights/{DEFAULT_MODEL})")
    v.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="decision threshold (default 0.25 on raw cosine, 2.0 with --cohort)",
    )
    v.add_argument(
        "--cohort",
        nargs="+",
        help="impostor cohort for adaptive S-norm: audio files or one .npy of embeddings",
    )
    v.add_argument("--top-k", type=int, default=None, help="cohort scores kept (AS-norm)")
    v.add_argument("--format", default="text", choices=["text", "json"])
    v.set_defaults(func=run_verify)


def run_embed(args) -> int:
    import numpy as np

    from ..audio import audio_info
    from ..errors import MasError
    from ..models.ecapa.embed import load_ecapa

    if args.format == "npy" and not args.out:
        raise MasError("--format npy needs --out FILE.npy")
    for f in args.audio:  # bad files (FIFO, truncated, empty...) refused before the model loads
        audio_info(f)
    enc = load_ecapa(_model_path(args.model))
    emb = enc.embed(
        args.audio,
        batch_size=args.batch_size,
        normalize=args.normalize,
        progress=len(args.audio) > 2 * args.batch_size,
    )
    if args.format == "npy":
        np.save(args.out, emb)
        print(f"wrote {args.out} {emb.shape}")
        return 0
    if args.format == "json":
        lines = [
            json.dumps({"file": str(f), "embedding": [round(float(x), 7) for x in e]})
            for f, e in zip(args.audio, emb)
        ]
    else:
        lines = [" ".join(f"{x:.7g}" for x in e) for e in emb]
    text = "\n".join(lines) + "\n"
    if args.out:
        from ..formats import write_atomic

        write_atomic(args.out, text)
        print(f"wrote {args.out} ({len(lines)} embeddings)")
    else:
        sys.stdout.write(text)
    return 0


def run_verify(args) -> int:
    from ..models.ecapa.embed import load_ecapa
    from ..models.ecapa.scoring import verify

    enc = load_ecapa(_model_path(args.model))
    r = verify(enc, args.a, args.b, threshold=args.threshold, cohort=args.cohort, top_k=args.top_k)
    if args.format == "json":
        print(json.dumps(r))
    else:
        kind = "s-norm score" if r["normalized"] else "cosine"
        print(
            f"{kind} {r['score']:.4f} (threshold {r['threshold']}): "
            f"{'same speaker' if r['same_speaker'] else 'different speakers'}"
        )
    return 0
