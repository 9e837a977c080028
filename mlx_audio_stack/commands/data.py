"""`mas data manifest|index`: build dataset manifests; regenerate DATA_INDEX.md."""

from __future__ import annotations

from pathlib import Path


def _kv(items: list[str] | None, what: str) -> dict[str, str]:
    from ..data.manifest import ManifestError

    out = {}
    for it in items or []:
        k, sep, v = it.partition("=")
        if not sep or not k:
            raise ManifestError(f"{what}: expected KEY=VALUE, got {it!r}")
        out[k] = v
    return out


def register(sub) -> None:
    p = sub.add_parser("data", help="dataset manifests and the data index")
    dsub = p.add_subparsers(dest="data_command", metavar="<action>")
    m = dsub.add_parser(
        "manifest",
        help="build a JSON-lines manifest with an adapter",
        description="Adapters: librispeech, fsdd, rttm, ravdess, cremad, csv; "
        "`shared` builds every manifest of the shared data folder.",
    )
    m.add_argument("adapter", help="librispeech | fsdd | rttm | ravdess | cremad | csv | shared")
    m.add_argument(
        "source",
        nargs="?",
        help="dataset folder, RTTM file or CSV/TSV table "
        "(shared: the data folder, default $MAS_DATA_DIR or ../shared/data)",
    )
    m.add_argument("--out", help="output manifest (.jsonl)")
    m.add_argument("--out-dir", default="reports/qa/manifests", help="(shared) output folder")
    m.add_argument(
        "--registry",
        metavar="JSON",
        help="(shared) where to register the manifests (default: OUT_DIR/derived.json; the "
        "project's own registry only for its reports/qa/manifests)",
    )
    m.add_argument(
        "--qa",
        metavar="REPORT_DIR",
        help="(shared) also run the QA suite on each and write reports there",
    )
    m.add_argument("--deep", action="store_true", help="(shared, with --qa) deep QA mode")
    m.add_argument("--split", help="put every record in this split")
    m.add_argument(
        "--auto-split",
        action="store_true",
        help="(csv) speaker-disjoint deterministic train/valid/test split",
    )
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--dataset", help="dataset name to record")
    m.add_argument("--license", help="license to record")
    m.add_argument("--audio-dir", help="(rttm) folder of the audio files")
    m.add_argument("--uem", help="(rttm) UEM file (default: <rttm>.uem when present)")
    m.add_argument("--mode", default="windows", choices=["windows", "turns"], help="(rttm)")
    m.add_argument("--window", type=float, default=5.0, help="(rttm) window seconds")
    m.add_argument("--hop", type=float, help="(rttm) hop seconds (default: window)")
    m.add_argument("--column", action="append", metavar="FIELD=COLUMN", help="(csv) mapping")
    m.add_argument("--label", action="append", metavar="TASK=COLUMN", help="(csv) label column")
    m.add_argument("--where", action="append", metavar="COLUMN=PREFIX", help="(csv) row filter")
    m.set_defaults(func=run_manifest)
    ix = dsub.add_parser("index", help="regenerate DATA_INDEX.md from the data registry")
    ix.add_argument("--check", action="store_true", help="exit 1 if DATA_INDEX.md is stale")
    ix.add_argument("--status", action="store_true", help="also print local data status")
    ix.set_defaults(func=run_index)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def run_manifest(args) -> int:
    from ..data import build_manifest
    from ..data.manifest import ManifestError

    if args.adapter == "shared":
        return _run_shared(args)
    if not args.source or not args.out:
        raise ManifestError("manifest: give SOURCE and --out")
    opts: dict = {}
    for k in ("dataset", "license"):
        if getattr(args, k):
            opts[k] = getattr(args, k)
    if args.split:
        opts["split"] = args.split
    if args.adapter in ("ravdess", "cremad"):
        opts["seed"] = args.seed
    if args.adapter == "rttm":
        opts.update(
            audio_dir=args.audio_dir, uem=args.uem, mode=args.mode, window=args.window, hop=args.hop
        )
    if args.adapter == "csv":
        opts.update(
            columns=_kv(args.column, "--column"),
            labels=_kv(args.label, "--label"),
            where=_kv(args.where, "--where"),
            auto_split=args.auto_split,
            seed=args.seed,
        )
    out = build_manifest(args.adapter, args.source, args.out, **opts)
    from ..data.manifest import read_manifest

    m = read_manifest(out)
    print(f"wrote {out}: {len(m.records)} records, sha256 {m.content_hash[:16]}")
    return 0


def _run_shared(args) -> int:
    from ..data.manifest import ManifestError
    from ..data.registry import build_local
    from ..paths import data_dir

    root = Path(args.source) if args.source else data_dir()
    if root is None:
        raise ManifestError("shared data folder not found: set MAS_DATA_DIR or pass it")
    from ..data.registry import DERIVED_JSON, registry_for

    registry = Path(args.registry) if args.registry else registry_for(Path(args.out_dir))
    failed = 0
    for build, path in build_local(root, Path(args.out_dir), registry=registry):
        line = f"{build.manifest}: {path}"
        if args.qa:
            from ..data import run_qa

            deep = " --deep" if args.deep else ""
            r = run_qa(
                path,
                build.task,
                deep=args.deep,
                report_dir=args.qa,
                progress=False,
                command=f"mas qa run {path} --task {build.task}{deep} --report-dir {args.qa}",
            )
            line += f" -> QA {build.task}: {'passed' if r.passed else 'FAILED'}"
            failed += not r.passed
        print(line)
    if registry.resolve() == DERIVED_JSON.resolve():
        print("run `mas data index` to refresh DATA_INDEX.md")
    else:
        print(f"registered in {registry}")
    return 0 if not failed else 1


def run_index(args) -> int:
    from ..data import registry

    if args.status:
        from ..paths import data_dir

        for name, st in registry.local_status(data_dir()):
            print(f"{name:28s} {st}")
    if args.check:
        if registry.index_is_current():
            print(f"{registry.INDEX_PATH} is up to date")
            return 0
        print(f"{registry.INDEX_PATH} is out of date: run `mas data index`")
        return 1
    print(f"wrote {registry.write_index()}")
    return 0
