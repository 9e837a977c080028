#!/usr/bin/env python3
"""Which BLAS, and which OpenBLAS core type, runs MLX's CPU backend fastest on this machine.

Each candidate runs in a fresh process (the BLAS and its core type are fixed when the library
loads), in interleaved rounds: a 1024x1024 float32 product through MLX (GFLOP/s, best of 10)
and Whisper tiny.en greedy on the bundled 10.4 s clip (RTF, best of 2; the text is compared).
Candidates: mlx-audio-stack's automatic choice (no variable set), each OPENBLAS_CORETYPE,
Debian's BLIS when installed (`apt-get install libblis4-pthread`), and Intel MKL's runtime
when `--mkl DIR` names the unpacked `lib` folders of PyPI's mkl + intel-openmp (+ tbb) wheels.
Writes reports/blas.md.

    python tools/bench_blas.py --rounds 3 [--mkl /tmp/mkl/lib:/tmp/iomp/lib:/tmp/tbb/lib]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BLIS = "/usr/lib/x86_64-linux-gnu/blis-pthread/libblas.so.3"

CHILD = r"""
import json, os, sys, time
import mlx_audio_stack as mas
from mlx_audio_stack import _blas
import mlx.core as mx
n = 1024
a = mx.random.normal((n, n)); b = mx.random.normal((n, n)); mx.eval(a, b)
for _ in range(3):
    mx.eval(a @ b)
ts = []
for _ in range(10):
    t = time.perf_counter()
    mx.eval(a @ b)
    ts.append(time.perf_counter() - t)
best = min(ts)
out = {"gflops": 2 * n**3 / best / 1e9, "core": _blas.corename(), "blas": _blas.loaded}
w = sys.argv[1]
if os.path.isdir(w):
    from mlx_audio_stack.paths import DEMO_CLIP
    import soundfile as sf
    model = mas.load_whisper(w)
    dur = sf.info(str(DEMO_CLIP)).duration
    times, text = [], None
    for _ in range(2):  # the first run also warms up; the best of the two is kept
        t = time.perf_counter()
        text = mas.transcribe(str(DEMO_CLIP), model)["text"]
        times.append(time.perf_counter() - t)
    out.update(rtf=min(times) / dur, text=text)
print("RESULT " + json.dumps(out))
"""


def candidates(mkl: str | None, cores: list[str]) -> list[tuple[str, dict]]:
    base = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "MAS_BLAS")}
    out = [("OpenBLAS, automatic (no variable set)", dict(base))]
    for core in cores:
        out.append((f"OpenBLAS, OPENBLAS_CORETYPE={core}", dict(base, OPENBLAS_CORETYPE=core)))
    # one thread each too: on a busy machine a second thread can cost more than it brings
    out.append(("OpenBLAS, automatic, 1 thread", dict(base, OPENBLAS_NUM_THREADS="1")))
    if os.path.exists(BLIS):  # Debian's BLIS runs one thread unless told otherwise
        threads = str(os.cpu_count() or 1)
        out.append(("BLIS 0.9 (Debian libblis4-pthread), 1 thread", dict(base, MAS_BLAS=BLIS)))
        out.append(
            (
                f"BLIS 0.9, BLIS_NUM_THREADS={threads}",
                dict(base, MAS_BLAS=BLIS, BLIS_NUM_THREADS=threads),
            )
        )
    if mkl:
        rt = next(
            (str(p) for d in mkl.split(":") for p in sorted(Path(d).glob("libmkl_rt.so*"))), None
        )
        if rt:
            ld = mkl + ":" + base.get("LD_LIBRARY_PATH", "")
            out.append(("MKL runtime (PyPI mkl)", dict(base, MAS_BLAS=rt, LD_LIBRARY_PATH=ld)))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--mkl", help="colon-separated lib folders holding libmkl_rt.so*")
    ap.add_argument(
        "--cores",
        default="Prescott,Haswell,Zen,SkylakeX,Cooperlake",
        help="OPENBLAS_CORETYPE values to compare (comma-separated)",
    )
    ap.add_argument(
        "--weights",
        default=str(REPO / "weights" / "whisper-tiny.en"),
        help="converted tiny.en folder for the Whisper column ('none': products only)",
    )
    ap.add_argument("--out", default=str(REPO / "reports" / "blas.md"))
    args = ap.parse_args()
    cands = candidates(args.mkl, [c for c in args.cores.split(",") if c])
    results: dict[str, list[dict]] = {name: [] for name, _ in cands}
    for r in range(args.rounds):
        for name, env in cands:
            env = dict(env, PYTHONPATH=str(REPO), MAS_BLAS_CHECK="off")
            done = subprocess.run(
                [sys.executable, "-c", CHILD, args.weights], env=env, capture_output=True, text=True
            )
            line = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
            if done.returncode or not line:
                print(f"round {r + 1} {name}: failed: {done.stderr.strip()[-300:]}")
                continue
            res = json.loads(line[0][7:])
            results[name].append(res)
            rtf = f", RTF {res['rtf']:.3f}" if "rtf" in res else ""
            print(f"round {r + 1} {name}: {res['gflops']:.1f} GFLOP/s{rtf}")
    write_report(args, cands, results)
    return 0


def _command_line() -> str:
    """This run's arguments, with the long --mkl/--weights/--out paths shortened."""
    words, out = sys.argv[1:], []
    for i, w in enumerate(words):
        long_path = i > 0 and words[i - 1] in ("--mkl", "--weights", "--out") and "/" in w
        out.append(("..." if words[i - 1] == "--mkl" else Path(w).name) if long_path else w)
    return " ".join(out)


def write_report(args, cands, results) -> None:
    from mlx_audio_stack._blas import cpu_model

    cpu = cpu_model()
    load = os.getloadavg()[0]
    ref_text = next((rs[0].get("text") for rs in results.values() if rs), None)
    lines = [
        "# BLAS for MLX's CPU backend: which library and OpenBLAS core type",
        "",
        f"`python tools/bench_blas.py {_command_line()}` on {cpu} ({os.cpu_count()} CPUs), "
        f"{time.strftime('%Y-%m-%d')}; load average "
        f"{load:.1f} at the end (the machine is shared: compare rows of one run only). "
        "Each cell: median over rounds of each round's best; every candidate ran in its own "
        "process, interleaved.",
        "",
        "| candidate | core | sgemm 1024² GFLOP/s | tiny.en greedy RTF (10.4 s clip) | text |",
        "|---|---|---:|---:|---|",
    ]
    for name, _ in cands:
        rs = results[name]
        if not rs:
            lines.append(f"| {name} | - | failed | failed | |")
            continue
        gf = statistics.median(r["gflops"] for r in rs)
        rtf = [r["rtf"] for r in rs if "rtf" in r]
        same = "same" if all(r.get("text") == ref_text for r in rs) else "DIFFERS"
        same = same if ref_text is not None else "-"
        rtf_s = f"{statistics.median(rtf):.3f}" if rtf else "-"
        lines.append(f"| {name} | {rs[0]['core'] or '-'} | {gf:.1f} | {rtf_s} | {same} |")
    med = {
        name: (
            statistics.median(r["gflops"] for r in rs),
            statistics.median([r["rtf"] for r in rs if "rtf" in r] or [float("nan")]),
        )
        for name, rs in results.items()
        if rs
    }
    auto = cands[0][0]
    if auto in med and len(med) > 1:
        best_gf = max(med, key=lambda k: med[k][0])
        best_rtf = min(med, key=lambda k: med[k][1])
        lines += [
            "",
            f"Fastest product: {best_gf} ({med[best_gf][0]:.1f} GFLOP/s); the automatic "
            f"choice reaches {med[auto][0] / med[best_gf][0]:.2f}x of it."
            + (
                f" Fastest Whisper: {best_rtf} (RTF {med[best_rtf][1]:.3f}); the automatic "
                f"choice takes {med[auto][1] / med[best_rtf][1]:.2f}x its time."
                if ref_text is not None
                else ""
            ),
        ]
    twin = next(
        (
            n
            for n, rs in results.items()
            if n != auto and rs and results.get(auto) and rs[0]["core"] == results[auto][0]["core"]
        ),
        None,
    )
    if twin and auto in med:
        a, b = med[auto][0], med[twin][0]
        lines += [
            "",
            f"Noise: the automatic row and `{twin}` run the same kernels "
            f"({results[auto][0]['core']}); their products differ by "
            f"{abs(a - b) / max(a, b) * 100:.0f} % in this run: smaller differences are noise.",
        ]
    Path(args.out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    sys.exit(main())
