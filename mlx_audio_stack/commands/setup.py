"""`mas setup`: build what the first use would otherwise build (the CPU kernels, Linux)."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser(
        "setup",
        help="build the CPU kernels for this machine (Linux; cached, once per CPU and source)",
        description="Compile the CPU kernels library (mlx_audio_stack/kernels/c/*.c) with the "
        "system's C compiler into ~/.cache/mlx-audio-stack. Without it the first use builds "
        "them, and MLX's own few-row products use them only from the next process on. "
        "Exit 1 when they cannot be built (the models then run their plain MLX path).",
    )
    p.set_defaults(func=run)


def run(args) -> int:
    import sys

    from ..kernels import build

    if not sys.platform.startswith("linux"):
        print("setup: nothing to build here (the CPU kernels are for MLX's CPU backend on Linux)")
        return 0
    was = build.built()
    try:
        path = build.build()
    except build.BuildError as exc:
        print(f"setup: the CPU kernels could not be built: {exc}", file=sys.stderr)
        return 1
    print(f"CPU kernels: {path} ({'already built' if was else 'built'})")
    return 0
