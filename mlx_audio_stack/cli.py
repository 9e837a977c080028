"""The `mas` console script: parses arguments and prints; the work lives in the library.

Subcommands are discovered from `mlx_audio_stack.commands`: each module there defines
`register(subparsers)` and sets `func` on its parser(s).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import signal
import sys

from . import __version__  # noqa: F401  (loads the BLAS before MLX)
from .atomic import Terminated, install_signal_handlers
from .errors import MasError


def build_parser() -> argparse.ArgumentParser:
    from . import commands

    parser = argparse.ArgumentParser(
        prog="mas", description="mlx-audio-stack: MLX audio models and the multi-speaker pipeline"
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    for mod in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if not mod.name.startswith("_"):
            importlib.import_module(f"{commands.__name__}.{mod.name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    # SIGTERM/SIGHUP unwind like Ctrl-C: temporary outputs are removed (see atomic.py)
    install_signal_handlers()
    try:
        rc = args.func(args)
    except MasError as exc:
        print(f"mas {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:
        signum = exc.signum if isinstance(exc, Terminated) else 2
        print(f"mas {args.command}: interrupted ({signal.Signals(signum).name})", file=sys.stderr)
        return 128 + signum
    except BrokenPipeError:
        return 0
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
