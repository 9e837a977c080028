"""`mas features cache MANIFEST --model W --out DIR`: the Whisper encoder-feature cache."""

from __future__ import annotations


def register(sub) -> None:
    from ..progress import add_quiet_flag

    p = sub.add_parser("features", help="encoder-feature caches for training the Whisper heads")
    fsub = p.add_subparsers(dest="features_command", metavar="<action>")
    c = fsub.add_parser(
        "cache",
        help="every encoder layer's pooled output of each manifest record, sharded safetensors",
        description="Resumable: run it again after a kill and finished shards are skipped.",
    )
    c.add_argument("manifest", help="JSON-lines manifest")
    c.add_argument("--model", required=True, help="converted Whisper weights folder")
    c.add_argument("--out", required=True, help="cache folder")
    c.add_argument("--pool", type=int, default=5, help="encoder frames (20 ms) per cached frame")
    c.add_argument("--shard-size", type=int, default=64, help="records per shard")
    c.add_argument("--dtype", default="float16", choices=["float16", "float32"])
    c.add_argument("--registry", help="derived-data registry to list the cache in "
                   "(default: derived.json beside the cache folder)")  # fmt: skip
    add_quiet_flag(c)
    c.set_defaults(func=run_cache)
    p.set_defaults(func=lambda a: p.print_help() or 2)


def run_cache(args) -> int:
    from ..heads.features import cache_features
    from ..progress import show_progress

    cache = cache_features(
        args.manifest,
        args.model,
        args.out,
        pool=args.pool,
        shard_size=args.shard_size,
        dtype=args.dtype,
        progress=show_progress(args.quiet),
        registry=args.registry,
    )
    ix = cache.index
    print(
        f"{cache.path}: {ix['n_records']} records, {len(ix['shards'])} shards, "
        f"{ix['n_layers']} layers x {ix['n_state']}, {ix['frame_seconds']:.2f} s frames, "
        f"{ix['dtype']}"
    )
    return 0
