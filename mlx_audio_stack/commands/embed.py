"""`mas embed` (speaker embeddings) and `mas verify` (same speaker or not?).

Either speaker embedder (ECAPA-TDNN or the voice encoder) through `embedders.load_embedder`;
without --model the default one (weights/ecapa-voxceleb, else weights/voice-encoder).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

MODEL_HELP = (
    "converted embedder folder (ECAPA or voice encoder); default weights/ecapa-voxceleb, "
    "else weights/voice-encoder"
)


def _load(arg: str | None):
    from ..embedders import default_embedder, load_embedder

    return load_embedder(Path(arg)) if arg else default_embedder()[0]


def _progress(args) -> bool:
    """A bar on stderr unless --quiet or stderr is not a terminal."""
    return not args.quiet and sys.stderr.isatty()


def register(sub) -> None:
    p = sub.add_parser(
        "embed",
        help="speaker embeddings (ECAPA-TDNN or voice encoder) of audio files",
        description="One speaker embedding per audio file (any rate: resampled to 16 kHz): "
        "192-d ECAPA (raw) or 256-d voice encoder (unit length).",
    )
    p.add_argument("audio", nargs="+", help="audio files")
    p.add_argument("--model", help=MODEL_HELP)
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
        help="ECAPA only: subtract the global embedding mean (mean_var_norm_emb)",
    )
    p.add_argument("--batch-size", type=int, default=8, help="ECAPA utterances per batch")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_embed)

    v = sub.add_parser(
        "verify",
        help="cosine score of two recordings: same speaker?",
        description="Cosine similarity of the two files' speaker embeddings and the decision "
        "score > threshold (default: the model's own, see --threshold).",
    )
    v.add_argument("a")
    v.add_argument("b")
    v.add_argument("--model", help=MODEL_HELP)
    v.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="decision threshold (default on raw cosine: 0.25 for ECAPA, 0.74 for the voice "
        "encoder, from its EER thresholds in reports/voice_encoder.md; 2.0 with --cohort)",
    )
    v.add_argument(
        "--cohort",
        nargs="+",
        help="impostor cohort for adaptive S-norm: audio files or one .npy of embeddings",
    )
    v.add_argument("--top-k", type=int, default=None, help="cohort scores kept (AS-norm)")
    v.add_argument("--format", default="text", choices=["text", "json"])
    v.add_argument("--quiet", action="store_true", help="no progress bar for the cohort")
    v.set_defaults(func=run_verify)


def _embed(enc, files, args, progress: bool):
    """Embed files with either model, a progress bar when asked."""
    from ..errors import MasError

    if getattr(enc, "name", "") == "ecapa":
        return enc.embed(  # `mas verify` has neither flag: the defaults
            files,
            batch_size=getattr(args, "batch_size", 8),
            normalize=getattr(args, "normalize", False),
            progress=progress,
        )
    if getattr(args, "normalize", False):
        raise MasError(f"--normalize: only ECAPA has embedding statistics, not {enc.name}")
    return enc.embed(files, progress=progress)


def run_embed(args) -> int:
    import numpy as np

    from ..audio import audio_info
    from ..errors import MasError

    if args.format == "npy" and not args.out:
        raise MasError("--format npy needs --out FILE.npy")
    for f in args.audio:  # bad files (FIFO, truncated, empty...) refused before the model loads
        audio_info(f)
    enc = _load(args.model)
    emb = _embed(enc, args.audio, args, _progress(args))
    if args.format == "npy":
        from ..atomic import atomic_output

        with atomic_output(args.out) as tmp, open(tmp, "wb") as f:
            np.save(f, emb)
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
    from ..models.ecapa.scoring import load_cohort, verify

    enc = _load(args.model)
    cohort = args.cohort
    if cohort is not None and not (len(cohort) == 1 and str(cohort[0]).endswith(".npy")):
        cohort = _embed(enc, cohort, args, _progress(args))  # audio files: with a bar
    elif cohort is not None:
        cohort = load_cohort(enc, cohort)
    r = verify(enc, args.a, args.b, threshold=args.threshold, cohort=cohort, top_k=args.top_k)
    r["model"] = getattr(enc, "name", "?")
    if args.format == "json":
        print(json.dumps(r))
    else:
        kind = "s-norm score" if r["normalized"] else "cosine"
        print(
            f"{kind} {r['score']:.4f} (threshold {r['threshold']}, {r['model']}): "
            f"{'same speaker' if r['same_speaker'] else 'different speakers'}"
        )
    return 0
