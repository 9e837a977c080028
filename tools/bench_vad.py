"""Speed of Silero VAD (MLX) against the silero JIT and ONNX Runtime, side by side in one run.
Writes its section of reports/vad.md.

    python tools/bench_vad.py            # about 1-2 min
    python tools/bench_vad.py --no-write

Streaming: one chunk at a time (512 samples at 16 kHz, 256 at 8 kHz) through each stateful
wrapper, the way live audio arrives: silero's JIT (`model(chunk, sr)`), silero's `OnnxWrapper`
on `silero_vad.onnx`, and our `VADStream`; median per-chunk time over rounds that interleave
the three. Offline: whole-file probabilities, as seconds of audio per second: the JIT's
per-chunk loop (`audio_forward`), ONNX Runtime's per-chunk loop (`OnnxWrapper.audio_forward`),
silero's batched ONNX sequence model (`silero_vad_16k_sequence.onnx`, 16 kHz only) and our
`speech_probs`. Every run is checked to agree with the JIT within 1e-4.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

from eval_vad import write_section  # noqa: E402

import mlx_audio_stack  # noqa: E402,F401  (BLAS before mlx)
from mlx_audio_stack.audio import load_audio  # noqa: E402
from mlx_audio_stack.models.silero_vad import VADStream, load_vad, speech_probs  # noqa: E402
from mlx_audio_stack.paths import data_dir, weights_dir  # noqa: E402


def machine() -> str:
    import mlx.core as mx

    from mlx_audio_stack._blas import cpu_model

    cpu = cpu_model()
    load = (
        f", load average {os.getloadavg()[0]:.1f} at the start" if hasattr(os, "getloadavg") else ""
    )
    return (
        f"{platform.system()} {platform.machine()}, {cpu}, {os.cpu_count()} cores{load}; "
        f"Python {platform.python_version()}, MLX {mx.__version__} ({mx.default_device()})"
    )


def per_chunk(fn, chunks, repeat: int = 1) -> float:
    """Mean seconds per call of fn(chunk) over `chunks`."""
    t = time.perf_counter()
    for _ in range(repeat):
        for c in chunks:
            fn(c)
    return (time.perf_counter() - t) / (repeat * len(chunks))


def bench_streaming(x: np.ndarray, sr: int, model, jit, onnx, rounds: int) -> dict[str, float]:
    import torch

    n = 512 if sr == 16000 else 256
    chunks = [x[i : i + n] for i in range(0, x.size - n + 1, n)]
    tchunks = [torch.from_numpy(c.copy()) for c in chunks]
    stream = VADStream(model, sr)
    runs = {
        "silero JIT (torch, 1 thread)": lambda c: jit(c, sr).item(),
        "ONNX Runtime (silero OnnxWrapper)": lambda c: onnx(c, sr).item(),
        "MLX VADStream (ours)": stream,
    }
    inputs = {k: (chunks if k.startswith("MLX") else tchunks) for k in runs}
    times: dict[str, list[float]] = {k: [] for k in runs}
    for k, fn in runs.items():  # warm-up (MLX compiles its step on first use)
        per_chunk(fn, inputs[k][:50])
    for _ in range(rounds):
        jit.reset_states()
        onnx.reset_states()
        stream.reset()
        for k, fn in runs.items():
            times[k].append(per_chunk(fn, inputs[k]))
    # the three agree on the same stream
    jit.reset_states()
    stream.reset()
    diff = max(abs(jit(t, sr).item() - stream(c)) for c, t in zip(chunks[:200], tchunks[:200]))
    if diff > 1e-4:
        raise SystemExit(f"streaming disagrees with the JIT: {diff:.2e}")
    return {k: statistics.median(v) for k, v in times.items()}


def bench_offline(x: np.ndarray, sr: int, model, jit, onnx, seq, rounds: int) -> dict[str, float]:
    import torch

    xt = torch.from_numpy(x)
    ref = jit.audio_forward(xt, sr)[0].numpy()
    runs = {
        "silero JIT per-chunk loop (`audio_forward`)": lambda: jit.audio_forward(xt, sr),
        "ONNX Runtime per-chunk loop (`OnnxWrapper.audio_forward`)": lambda: onnx.audio_forward(
            xt, sr
        ),
        "MLX `speech_probs` (ours, batched front end)": lambda: speech_probs(model, x, sr),
    }
    if sr == 16000 and seq is not None:
        runs["ONNX Runtime sequence model (silero, batched, 16 kHz only)"] = lambda: (
            seq.audio_forward(x, sr)
        )
    got = {k: np.asarray(fn()).reshape(-1) for k, fn in runs.items()}  # warm-up + check
    for k, p in got.items():
        err = float(np.abs(p - ref).max())
        if err > 1e-4:
            raise SystemExit(f"{k} disagrees with the JIT: {err:.2e}")
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(rounds):
        for k, fn in runs.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(weights_dir() / "silero-vad"))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    import silero_vad
    import torch
    from silero_vad.sequence_vad import SileroVADSequence

    torch.set_num_threads(1)
    data = data_dir()
    if data is None:
        print("shared data not found (set MAS_DATA_DIR)", file=sys.stderr)
        return 1
    if not Path(args.model).exists():
        from mlx_audio_stack.weights_get import get_weights

        get_weights("silero-vad", args.model, offline=True)
    model = load_vad(args.model)
    jit = silero_vad.load_silero_vad()
    onnx = silero_vad.load_silero_vad(onnx=True)
    seq_path = Path(silero_vad.__file__).parent / "data" / "silero_vad_16k_sequence.onnx"
    seq = SileroVADSequence(str(seq_path)) if seq_path.exists() else None
    clips = sorted((data / "ami_meeting_clips").glob("*.wav"))
    t0 = time.time()

    summary: list[str] = []
    out = [
        "| rate | implementation | per chunk (ms) | vs JIT | vs ONNX Runtime |",
        "|---|---|---:|---:|---:|",
    ]
    for sr in (16000, 8000):
        x = load_audio(clips[0], sr)[: sr * 10]  # 10 s: 312 chunks per round
        res = bench_streaming(x, sr, model, jit, onnx, args.rounds)
        j, o = res["silero JIT (torch, 1 thread)"], res["ONNX Runtime (silero OnnxWrapper)"]
        for k, v in res.items():
            out.append(f"| {sr} | {k} | {v * 1e3:.3f} | {j / v:.2f}x | {o / v:.2f}x |")
        m = res["MLX VADStream (ours)"]
        summary.append(
            f"streaming {sr // 1000} kHz: {m * 1e3:.3f} ms per chunk, {j / m:.2f}x "
            f"the JIT's speed (target >= 1x), {o / m:.2f}x ONNX Runtime's"
        )
    stream_table = "\n".join(out)

    out = [
        "| rate | audio | implementation | time (ms) | audio s / s | vs ONNX per-chunk |",
        "|---|---|---|---:|---:|---:|",
    ]
    for sr in (16000, 8000):
        for label, x in (
            ("30 s (trn00)", load_audio(clips[0], sr)),
            ("300 s (10 AMI clips)", np.concatenate([load_audio(c, sr) for c in clips])),
        ):
            res = bench_offline(x, sr, model, jit, onnx, seq, max(1, args.rounds // 2))
            base = res["ONNX Runtime per-chunk loop (`OnnxWrapper.audio_forward`)"]
            dur = x.size / sr
            for k, v in res.items():
                out.append(
                    f"| {sr} | {label} | {k} | {v * 1e3:.1f} | {dur / v:.0f} | {base / v:.1f}x |"
                )
            ours = res["MLX `speech_probs` (ours, batched front end)"]
            summary.append(
                f"offline {sr // 1000} kHz, {label}: {base / ours:.1f}x faster than "
                f"ONNX Runtime's per-chunk loop (target >= 3x)"
            )
    offline_table = "\n".join(out)

    text = f"""## Speed (side by side in one run)

Machine: {machine()}. torch {torch.__version__} on 1 thread (silero's own setting),
onnxruntime 1 thread (silero's wrapper). Timings share the machine with other work: compare
the ratios, measured in the same rounds, not absolute values across runs.

Summary:
{chr(10).join("- " + line for line in summary)}

### Streaming: one chunk per call (median of {args.rounds} rounds x 312 chunks)

{stream_table}

### Offline: whole file to per-chunk probabilities (median of {max(1, args.rounds // 2)} runs)

{offline_table}

Reproduce: `python tools/bench_vad.py` ({time.time() - t0:.0f} s).
"""
    print(text)
    if not args.no_write:
        write_section("bench", text)
        print("wrote reports/vad.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
