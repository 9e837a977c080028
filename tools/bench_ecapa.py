"""Speed of the MLX ECAPA-TDNN embedding pipeline beside SpeechBrain's (torch, 2 threads), in
one process, interleaved run by run, on the full-size spkrec-ecapa-voxceleb model (random
weights: speed does not depend on them). Writes reports/ecapa.md.

    python tools/bench_ecapa.py [--reps 10] [--out reports/ecapa.md]

Both sides run the whole `encode_batch` path: Fbank -> sentence mean norm -> ECAPA_TDNN.
"""

from __future__ import annotations

import argparse
import importlib.util
import platform
import sys
import tempfile
import time
from pathlib import Path

import mlx_audio_stack  # noqa: F401  (fast BLAS before mlx)

ROOT = Path(__file__).resolve().parents[1]


def _tool():
    spec = importlib.util.spec_from_file_location(
        "make_ecapa_fixtures", ROOT / "tools" / "make_ecapa_fixtures.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> int:
    import mlx.core as mx
    import numpy as np
    import torch

    from mlx_audio_stack.audio import load_audio
    from mlx_audio_stack.convert import convert
    from mlx_audio_stack.models.ecapa import SpeakerEncoder
    from mlx_audio_stack.paths import data_dir

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--out", default=str(ROOT / "reports" / "ecapa.md"))
    a = p.parse_args(argv)
    torch.set_num_threads(2)

    load_start = _loadavg()
    tool = _tool()
    ref = tool.build_reference(tiny=False, seed=0)
    with tempfile.TemporaryDirectory(prefix="bench-ecapa-") as td:  # ~170 MB, removed after
        tmp = Path(td)
        enc = SpeakerEncoder.load(convert(tool.save_folder(ref, tmp / "sb"), tmp / "mlx"))

    d = data_dir()
    if d is None:
        print("shared data not found (MAS_DATA_DIR): using noise", file=sys.stderr)
        wavs = [
            np.random.default_rng(i).standard_normal(48000).astype(np.float32) * 0.1
            for i in range(8)
        ]
    else:
        files = sorted((d / "librispeech" / "test-other").rglob("*.flac"))[::5]
        wavs = [w[:48000] for w in map(load_audio, files) if w.size >= 48000][:8]
    # parity on the same inputs (unbatched, and as one exact batch)
    with torch.no_grad():
        sb_emb = np.concatenate(
            [
                ref.model(
                    ref.norm(ref.fbank(torch.from_numpy(w)[None]), torch.ones(1)), torch.ones(1)
                )[:, 0].numpy()
                for w in wavs
            ]
        )
        sb_fb = [ref.fbank(torch.from_numpy(w)[None])[0].numpy() for w in wavs]
    mx_emb = np.concatenate([enc.embed(w) for w in wavs])
    mx_fb = [np.array(enc.fbank(mx.array(w)[None]))[0] for w in wavs]
    emb_diff = float(np.abs(mx_emb - sb_emb).max())
    cos = (
        np.sum(mx_emb * sb_emb, 1) / np.linalg.norm(mx_emb, axis=1) / np.linalg.norm(sb_emb, axis=1)
    )
    fb_diff = max(float(np.abs(a - b).max()) for a, b in zip(mx_fb, sb_fb))
    fb_rel = max(
        float((np.abs(a - b) / np.maximum(np.abs(b), 1)).max()) for a, b in zip(mx_fb, sb_fb)
    )
    print(
        f"parity: embeddings max |diff| {emb_diff:.2e}, min cosine {cos.min():.8f}; "
        f"Fbank max |diff| {fb_diff:.2e} dB (relative {fb_rel:.2e})"
    )
    rows = []
    for b in (1, 8):
        batch = np.stack(wavs[:b])  # (B, 48000): 3 s each

        def run_sb(batch=batch):
            with torch.no_grad():
                x = torch.from_numpy(batch)
                lens = torch.ones(x.shape[0])
                return ref.model(ref.norm(ref.fbank(x), lens), lens)

        def run_mlx(batch=batch):
            e = enc.embed_batch(mx.array(batch))
            mx.eval(e)
            return e

        gemms = _gemm_inputs(enc.model.args, b, 1 + 48000 // 160)

        def run_gemms(gemms=gemms):  # the MLX model's matrix products alone: its floor
            mx.eval([x @ w for x, w in gemms])

        for f in (run_sb, run_mlx, run_gemms, run_sb, run_mlx):  # warm-up
            f()
        times = {"sb": [], "mlx": [], "gemm": []}
        for _ in range(a.reps):
            for name, f in (("sb", run_sb), ("mlx", run_mlx), ("gemm", run_gemms)):
                t0 = time.perf_counter()
                f()
                times[name].append(time.perf_counter() - t0)
        sb_ms, mlx_ms = (1000 * float(np.median(times[k])) for k in ("sb", "mlx"))
        sb_min, mlx_min = (1000 * min(times[k]) for k in ("sb", "mlx"))
        # each MLX run against the SpeechBrain run just before it (same moment's load)
        pair = float(np.median(np.array(times["mlx"]) / np.array(times["sb"])))
        floor = float(np.median(np.array(times["mlx"]) / np.array(times["gemm"])))
        # the GEMMs alone against SpeechBrain's whole pass, same round: the port's best case
        gemm_sb = float(np.median(np.array(times["gemm"]) / np.array(times["sb"])))
        rows.append((b, sb_ms, mlx_ms, sb_min, mlx_min, pair, floor, gemm_sb))
        print(
            f"batch {b} x 3 s: SpeechBrain {sb_ms:.1f} ms, MLX {mlx_ms:.1f} ms (medians); "
            f"MLX/SpeechBrain: median pair ratio {pair:.2f}, ratio of mins {mlx_min / sb_min:.2f}; "
            f"MLX / its GEMMs alone {floor:.2f}; its GEMMs alone / SpeechBrain {gemm_sb:.2f}"
        )

    load = _loadavg().split()
    worst = max(max(r[5], r[4] / r[3]) for r in rows)
    verdict = "met" if worst <= 0.8 else f"not met (worst ratio {worst:.2f})"
    lines = [
        "# ECAPA-TDNN speed: MLX vs SpeechBrain",
        "",
        "Full-size spkrec-ecapa-voxceleb ECAPA_TDNN (20.8 M parameters, random weights), whole",
        "`encode_batch` path (Fbank, sentence mean norm, ECAPA_TDNN), float32, CPU.",
        f"SpeechBrain {_version('speechbrain')} on torch {torch.__version__} "
        f"({torch.get_num_threads()} threads) beside mlx {mx.__version__} (OpenBLAS loaded), "
        f"same process, runs interleaved, median of {a.reps} (min in brackets).",
        "",
        "| input | SpeechBrain ms, median (min) | MLX ms, median (min) "
        "| MLX / SpeechBrain, median of pairs | of mins | MLX's GEMMs alone / SpeechBrain |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for b, s, m, smin, mmin, pair, _floor, gemm_sb in rows:
        lines.append(
            f"| {b} x 3 s | {s:.1f} ({smin:.1f}) | {m:.1f} ({mmin:.1f}) | "
            f"{pair:.2f} | {mmin / smin:.2f} | {gemm_sb:.2f} |"
        )
    lines += [
        "",
        "Target: at most 0.8x SpeechBrain's time.",
        "",
        f"Parity on the same {len(wavs)} utterances (3 s, unbatched): embeddings max |diff| "
        f"{emb_diff:.2e}, min cosine {cos.min():.8f}; Fbank max |diff| {fb_diff:.2e} dB "
        f"(relative {fb_rel:.2e}). The test suite's figures: tests/test_ecapa_parity.py.",
        "",
        f"Machine: {_cpu()}, {_ncpu()} cores, {platform.system()} {platform.release()}; "
        f"load average {load_start} at the start, {' '.join(load)} at the end.",
        "",
        "Other jobs may share the cores. Runs alternate, so both sides see the same load, but",
        "load does not hurt them equally: torch's 2-thread OpenMP regions (one per small op)",
        "stall when a thread is descheduled, while MLX runs element-wise ops on one thread and",
        "only its BLAS calls on two. 'Median of pairs' compares each MLX run with the",
        "SpeechBrain run just before it; 'of mins' compares each side's least-disturbed run,",
        "the better estimate of an unloaded machine.",
        "",
        "Reproduce: `python tools/bench_ecapa.py` (needs requirements/ref-ecapa*.txt, "
        "`sh tools/install_refs.sh`).",
        "",
        "## Where the time goes",
        "",
        "About 11 GFLOP per 3 s utterance, nearly all of it matrix products (the 3072x3072",
        "multi-layer aggregation alone is half). Both sides reach the same GEMM speed here",
        "(OpenBLAS for MLX, MKL for torch; side by side on the idle machine, this model's shapes",
        "ran at 173-202 GFLOP/s in MLX and 177-198 in torch; loaded for MLX instead of",
        "OpenBLAS, MKL 2026.2 and BLIS 0.9 ran a 1500x384x1536 product at 157 and 104",
        "GFLOP/s against OpenBLAS's ~180), so the MLX port can win only outside them:",
        "- every 1x1 conv is one 2-D `addmm` (bias fused), k>1 convs are im2col + one matmul",
        "  (MLX's CPU conv1d is slower); weights are cached in matmul layout at load;",
        "- the attentive pooling's TDNN runs on x only; the repeated mean/std context becomes a",
        "  per-utterance bias (`cat([x, mean, std]) @ W` = `x @ Wx + mean @ Wm + std @ Ws`),",
        "  a third of SpeechBrain's FLOPs there;",
        "- MLX's CPU `exp` is scalar (15 ms for one utterance's 301x3072 attention logits): on",
        "  CPU the pooling's softmax takes NumPy's vectorised exp in place on both cores",
        "  (whole model, 8 x 3 s: ~550 vs ~610 ms with the compiled polynomial exp, which stays",
        "  for GPUs: 4x MLX's exp, 1e-7 relative);",
        "- Res2Net chunks are made contiguous once (strided `split` views slowed every op);",
        "  the pooling keeps its softmax weights unnormalized (one (B, T, C) pass less);",
        "  ReLU+BatchNorm as a compiled kernel, and in place through NumPy on both cores, were",
        "  tried and dropped (both slower: after a matmul here, and a sync with MLX per block);",
        "- glibc's malloc returned every large freed buffer to the OS, so each big intermediate",
        "  page-faulted again (on this VM one 8x301x3072 exp went from 183 to 27 ms once the",
        "  mmap/trim thresholds were raised with `mallopt`; process-wide, so torch gets it too",
        "  in this benchmark).",
        "",
        f"Measured in the same runs, MLX's whole pipeline took {rows[0][6]:.2f}x (1 x 3 s) "
        f"and {rows[1][6]:.2f}x (8 x 3 s)",
        "the time of its matrix products alone. Under load SpeechBrain's non-GEMM overhead",
        "(OpenMP stalls) tilts the ratio towards MLX; read the ratios with the load average",
        f"above. This run: the 0.8x target is {verdict}. The matrix products alone (the",
        "same shapes on random operands, timed in the same rounds) took "
        + " and ".join(f"{r[7]:.2f}x" for r in rows)
        + " SpeechBrain's",
        "whole pass (1 x 3 s, 8 x 3 s), so at 0.8x the rest of the pass would have "
        + " and ".join(
            f"{(0.8 - r[7]) * r[1]:.0f} ms" if r[7] < 0.8 else "no time at all" for r in rows
        )
        + f" (MLX's rest now: {' and '.join(f'{r[2] - r[2] / r[6]:.0f} ms' for r in rows)}).",
        "What is left beyond the GEMMs:",
        "im2col copies of the k>1 convs, BatchNorm/ReLU passes and Res2Net chunk copies;",
        "the GEMMs themselves run on OpenBLAS 0.3.21 against torch's oneDNN/MKL.",
        "",
    ]
    Path(a.out).write_text("\n".join(lines))
    print(f"wrote {a.out}")
    return 0


def _gemm_inputs(args, b: int, t: int) -> list:
    """Random (M, K) and (K, N) operands of every matrix product of one forward pass."""
    import mlx.core as mx

    ch, ks, sc = args.channels, args.kernel_sizes, args.res2net_scale
    m = b * t
    shapes = [(m, args.input_size * ks[0], ch[0])]
    for i in range(1, len(ch) - 1):
        c = ch[i] // sc
        shapes += [(m, ch[i - 1], ch[i]), (m, ch[i], ch[i])] + [(m, c * ks[i], c)] * (sc - 1)
    shapes += [
        (m, ch[-2] * (len(ch) - 2), ch[-1]),
        (m, ch[-1], args.attention_channels),
        (m, args.attention_channels, ch[-1]),
    ]
    ops = [(mx.random.normal((mm, k)), mx.random.normal((k, n))) for mm, k, n in shapes]
    mx.eval(ops)
    return ops


def _loadavg() -> str:
    p = Path("/proc/loadavg")
    return " ".join(p.read_text().split()[:3]) if p.exists() else "?"


def _version(mod: str) -> str:
    from importlib.metadata import version

    try:
        return version(mod)
    except Exception:
        return "?"


def _ncpu() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


if __name__ == "__main__":
    sys.exit(main())
