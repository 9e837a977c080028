"""Cost of the QA gate's audio binding: `require_qa` stats every file a verdict vouches for and
rehashes those whose stat identity changed (sha256 of the first and last 16 KiB; a deep
verdict: the whole file; verify="full": every file). Writes reports/qa/GATE.md.

Two manifests: (a) 100,000 records that share few files (1 s windows over real LibriSpeech
files, as tools/bench_qa.py builds them), and (b) --files distinct small WAV files, one record
each (the per-file cost, scaled to 100,000 files in the table). The verdict is recorded
directly from fingerprints (the suite's own run is what bench_qa.py measures).

    python tools/bench_gate.py [--records 100000] [--files 10000]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

import mlx_audio_stack  # noqa: F401  (BLAS before anything imports mlx)
from mlx_audio_stack._blas import cpu_model as _cpu
from mlx_audio_stack.data import read_manifest, require_qa
from mlx_audio_stack.data.fingerprint import fingerprint
from mlx_audio_stack.data.gate import record_result, suite
from mlx_audio_stack.data.manifest import write_manifest
from mlx_audio_stack.paths import REPO_ROOT


def _record(manifest: Path, deep: bool) -> float:
    """Fingerprint every file of `manifest`, store a passed verdict; returns the seconds the
    fingerprints took (what a QA run adds for the gate)."""
    m = read_manifest(manifest)
    t0 = time.perf_counter()
    files = {}
    for a in {r["audio"] for r in m.records}:
        files[a] = fingerprint(m.audio_file({"audio": a}), deep=deep)
    took = time.perf_counter() - t0
    dq = suite()
    result = dq.QAResult(
        str(manifest), m.content_hash, dq.SUITE_VERSION, "audio", deep, [], [], {}, 0.0, files
    )
    record_result(result)
    return took


def _time(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--files", type=int, default=10_000)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ.setdefault("MAS_QA_KEY_FILE", str(tmp / "qa.key"))
        import bench_qa as bq  # tools/ is this script's folder, first on sys.path

        shared = bq.window_manifest(args.records, tmp / "windows.jsonl")
        n_files = len({r["audio"] for r in read_manifest(shared).records})
        for deep in (False, True):
            fp_s = _record(shared, deep)
            gate = _time(lambda d=deep: require_qa(shared, "audio", deep=d))
            full = _time(lambda d=deep: require_qa(shared, "audio", deep=d, verify="full"), 1)
            rows.append((f"{args.records} records, {n_files} files", deep, fp_s, gate, full))
        # distinct files: 0.5 s of 16 kHz PCM_16 each (16 KB: wholly inside the partial hash)
        x = (np.random.default_rng(0).standard_normal(8000) * 0.1).astype(np.float32)
        recs = []
        for i in range(args.files):
            p = tmp / "many" / f"{i // 1000}" / f"{i}.wav"
            p.parent.mkdir(parents=True, exist_ok=True)
            sf.write(str(p), x, 16000, subtype="PCM_16")
            recs.append({"id": str(i), "audio": str(p), "duration": 0.5})
        many = write_manifest(recs, tmp / "many.jsonl")
        for deep in (False, True):
            fp_s = _record(many, deep)
            gate = _time(lambda d=deep: require_qa(many, "audio", deep=d))
            full = _time(lambda d=deep: require_qa(many, "audio", deep=d, verify="full"), 1)
            rows.append((f"{args.files} records, {args.files} files", deep, fp_s, gate, full))
    scale = 100_000 / args.files
    lines = [
        "# QA gate: cost of binding the verdict to the audio",
        "",
        f"Command: `python tools/bench_gate.py --records {args.records} --files {args.files}`",
        "",
        f"CPU: {_cpu()}, {os.cpu_count()} cores shared with other jobs (load average "
        f"{os.getloadavg()[0]:.1f} at the end of the run); warm page cache.",
        "",
        "`require_qa` = manifest sha256 + verdict read + HMAC check + one stat per file (files "
        "untouched since the run; a changed file costs its partial or full hash, as the "
        "verify='full' column shows for all). Fingerprinting = what a QA run does to record "
        "the verdict (stat + partial hash; deep: + the full sha256 of every file; the cheap "
        "check hashed the same 32 KiB before). Best of 3 gate calls.",
        "",
        "| manifest | verdict | fingerprinting s | require_qa s | require_qa verify='full' s |",
        "|---|---|---:|---:|---:|",
    ]
    for name, deep, fp_s, gate, full in rows:
        lines.append(
            f"| {name} | {'deep' if deep else 'cheap'} | {fp_s:.2f} | {gate:.3f} | {full:.3f} |"
        )
    per_file = [r for r in rows if r[0].startswith(f"{args.files} records")]
    lines += [
        "",
        "Scaled to 100,000 distinct files (linear in the file count): require_qa "
        + ", ".join(f"{r[3] * scale:.1f} s ({'deep' if r[1] else 'cheap'})" for r in per_file)
        + "; fingerprinting "
        + ", ".join(f"{r[2] * scale:.1f} s ({'deep' if r[1] else 'cheap'})" for r in per_file)
        + ".",
        "",
    ]
    out = REPO_ROOT / "reports" / "qa" / "GATE.md"
    out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
