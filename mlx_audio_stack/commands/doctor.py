"""`mas doctor`: what this machine runs MLX with (BLAS, its core type and speed, C kernels)."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser(
        "doctor",
        help="print the BLAS loaded, the core it runs, its GFLOP/s and the C kernels' state",
        description="Measure and print what MLX's CPU backend runs with here: the BLAS library "
        "loaded, the OpenBLAS core type (and who set OPENBLAS_CORETYPE), a 1024x1024 float32 "
        "product's GFLOP/s through MLX, and the state of the CPU kernels (kernels/). Exit 1 when "
        "the BLAS is slow or missing.",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args) -> int:
    import json
    import sys

    from .._blas import blas_report

    if not sys.platform.startswith("linux"):
        print("doctor: nothing to check here (MLX uses the system's Accelerate on macOS)")
        return 0
    r = blas_report()
    if args.json:
        print(json.dumps(r, indent=1))
    else:
        print(f"cpu:               {r['cpu']} ({r['isa'] or 'no AVX2'})")
        print(f"blas:              {r['blas']}")
        if r["config"]:
            print(f"openblas:          {r['config']}")
        print(f"core:              {r['core'] or '-'} (best for these flags: {r['expected_core']})")
        print(f"OPENBLAS_CORETYPE: {r['OPENBLAS_CORETYPE']}")
        n = r["gflops_n"]
        label = f"sgemm {n}x{n}:"
        print(f"{label:19s}{r['gflops_mlx']:.1f} GFLOP/s through MLX")
        print(f"CPU kernels:       {r['gemv']}")
        env = " ".join(f"{k}={v}" for k, v in r["env"].items())
        print(f"environment:       {env or '-'}")
        print(f"verdict:           {'SLOW: ' + r['problem'] if r['problem'] else 'ok'}")
    return 1 if r["problem"] else 0
