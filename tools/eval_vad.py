"""Silero VAD (MLX) against the silero JIT: parity over the whole shared data set, and
speech/non-speech detection error on the AMI clips. Writes its section of reports/vad.md.

    python tools/eval_vad.py                      # everything (about 5 min on 2 cores)
    python tools/eval_vad.py --limit 50 --no-write  # a quick look

Parity: every file of MANIFEST.tsv is loaded at 16 kHz and at 8 kHz (soxr resampling where
the file's rate differs); the JIT's per-chunk loop (`audio_forward`, the same computation as
silero's `get_speech_timestamps` loop) and `speech_probs` see the same array. Segments: silero's
`get_speech_timestamps_from_probs` on the JIT's probabilities against our
`timestamps_from_probs` on ours (default options).
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import mlx_audio_stack  # noqa: E402,F401  (BLAS before mlx)
from mlx_audio_stack.audio import load_audio  # noqa: E402
from mlx_audio_stack.evaluation.rttm import read_rttm, read_uem  # noqa: E402
from mlx_audio_stack.evaluation.vad import DetectionError, detection_error  # noqa: E402
from mlx_audio_stack.models.silero_vad import (  # noqa: E402
    load_vad,
    speech_probs,
    speech_timestamps,
    timestamps_from_probs,
)
from mlx_audio_stack.paths import data_dir, weights_dir  # noqa: E402

REPORT = ROOT / "reports" / "vad.md"
TOL = 1e-4


def write_section(name: str, text: str, path: Path = REPORT) -> None:
    """Replace the `<!-- name:begin -->...<!-- name:end -->` block of the report (or add it)."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    block = f"{begin}\n{text.strip()}\n{end}"
    old = path.read_text() if path.exists() else "# Silero VAD (MLX)\n"
    if begin in old:
        new = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: block, old, flags=re.S)
    else:
        new = old.rstrip() + "\n\n" + block + "\n"
    path.write_text(new)


def load_reference():
    import silero_vad
    import torch

    torch.set_num_threads(1)  # silero's own setting; more threads were slower on 2 cores
    return silero_vad, silero_vad.load_silero_vad()


def parity(data: Path, model, silero, jit, limit: int | None, rates) -> tuple[str, bool]:
    import torch
    from tqdm import tqdm

    with open(data / "MANIFEST.tsv", newline="") as f:
        rows = sorted(csv.DictReader(f, delimiter="\t"), key=lambda r: r["relpath"])
    if limit:
        rows = rows[:: max(1, len(rows) // limit)][:limit]
    stats: dict[tuple[str, int], dict] = {}
    worst_file = ("", 0, 0.0)
    mismatched = []
    for r in tqdm(rows, desc="parity", unit="file"):
        rel = r["relpath"]
        folder = rel.split("/")[0]
        for sr in rates:
            x = load_audio(data / rel, sr)
            ref = jit.audio_forward(torch.from_numpy(x), sr)[0].numpy()
            ours = speech_probs(model, x, sr)
            err = float(np.abs(ref - ours).max()) if ref.size else 0.0
            seg_ref = silero.get_speech_timestamps_from_probs(
                ref.tolist(), sampling_rate=sr, audio_length_samples=x.size
            )
            seg_ours = timestamps_from_probs(ours, sr, audio_length_samples=x.size)
            s = stats.setdefault(
                (folder, sr),
                dict(files=0, chunks=0, max=0.0, over=0, seg=0, seg_diff=0, audio_s=0.0),
            )
            s["files"] += 1
            s["chunks"] += ref.size
            s["max"] = max(s["max"], err)
            s["over"] += err > TOL
            s["seg"] += len(seg_ref)
            s["seg_diff"] += seg_ref != seg_ours
            s["audio_s"] += x.size / sr
            if seg_ref != seg_ours:
                mismatched.append(f"{rel} @ {sr}")
            if err > worst_file[2]:
                worst_file = (rel, sr, err)
    lines = [
        "| folder | rate | files | audio (min) | chunks | max abs diff | files > 1e-4 | "
        "segments | files with other segments |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    tot = dict(files=0, chunks=0, max=0.0, over=0, seg=0, seg_diff=0, audio_s=0.0)
    for (folder, sr), s in sorted(stats.items()):
        lines.append(
            f"| {folder} | {sr} | {s['files']} | {s['audio_s'] / 60:.1f} | "
            f"{s['chunks']} | {s['max']:.1e} | {s['over']} | {s['seg']} | "
            f"{s['seg_diff']} |"
        )
        for k in tot:
            tot[k] = max(tot[k], s[k]) if k == "max" else tot[k] + s[k]
    lines.append(
        f"| **all** | both | {tot['files']} | {tot['audio_s'] / 60:.1f} | "
        f"{tot['chunks']} | {tot['max']:.1e} | {tot['over']} | {tot['seg']} | "
        f"{tot['seg_diff']} |"
    )
    ok = tot["over"] == 0 and tot["seg_diff"] == 0
    lines.append("")
    lines.append(
        f"Largest difference: {worst_file[2]:.2e} ({worst_file[0]} at {worst_file[1]} Hz)."
        + (f" Segment mismatches: {', '.join(mismatched[:10])}." if mismatched else "")
    )
    return "\n".join(lines), ok


def ami(data: Path, model, silero, jit, collar: float) -> str:
    import torch

    folder = data / "ami_meeting_clips"
    ref = read_rttm(folder / "debug.train.rttm")
    uem = read_uem(folder / "debug.train.uem")
    rows = [
        "| clip | speech (s) | MLX 16k missed | MLX 16k FA | JIT 16k missed | JIT 16k FA | "
        "MLX 8k missed | MLX 8k FA | JIT 8k missed | JIT 8k FA |",
        "|---|" + "---:|" * 9,
    ]
    totals = [DetectionError() for _ in range(4)]
    for wav in sorted(folder.glob("*.wav")):
        uri = wav.stem
        cells, errs = [], []
        for sr in (16000, 8000):
            x = load_audio(wav, sr)
            ours = speech_timestamps(x, model, sampling_rate=sr)
            theirs = silero.get_speech_timestamps(torch.from_numpy(x), jit, sampling_rate=sr)
            for segs in (ours, theirs):
                hyp = [(s["start"] / sr, s["end"] / sr) for s in segs]
                errs.append(
                    detection_error(ref.get(uri, []), hyp, uem.get(uri, [(0, x.size / sr)]), collar)
                )
        for i, e in enumerate(errs):
            totals[i] = totals[i] + e
            cells.append(f"{100 * e.missed:.1f}% | {100 * e.false_alarm:.1f}%")
        rows.append(f"| {uri} | {errs[0].speech_s:.1f} | " + " | ".join(cells) + " |")
    rows.append(
        f"| **all** | {totals[0].speech_s:.1f} | "
        + " | ".join(f"**{100 * e.missed:.1f}%** | **{100 * e.false_alarm:.1f}%**" for e in totals)
        + " |"
    )
    return "\n".join(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(weights_dir() / "silero-vad"))
    ap.add_argument("--limit", type=int, help="only this many files (evenly spaced)")
    ap.add_argument("--rates", default="16000,8000")
    ap.add_argument("--collar", type=float, default=0.25)
    ap.add_argument("--no-write", action="store_true", help="print, do not touch the report")
    args = ap.parse_args(argv)
    data = data_dir()
    if data is None:
        print("shared data not found (set MAS_DATA_DIR)", file=sys.stderr)
        return 1
    if not Path(args.model).exists():
        from mlx_audio_stack.weights_get import get_weights

        get_weights("silero-vad", args.model, offline=True)
    model = load_vad(args.model)
    silero, jit = load_reference()
    t0 = time.time()
    table, ok = parity(
        data, model, silero, jit, args.limit, [int(r) for r in args.rates.split(",")]
    )
    der = ami(data, model, silero, jit, args.collar)
    cmd = "python tools/eval_vad.py" + (f" --limit {args.limit}" if args.limit else "")
    text = f"""## Parity with the silero JIT (`silero_vad.jit`, silero-vad {silero.__version__})

Every file of the shared data, loaded at 16 kHz and at 8 kHz, through our `speech_probs`
(batched offline mode) and the JIT's per-chunk loop on the same array. Target: every
per-chunk probability within {TOL:g} of the JIT's, and identical segments (default options) for
both branches. Result: **{"PASS" if ok else "FAIL"}**.

{table}

## Speech detection on the AMI clips (reference: speaker turns of `debug.train.rttm`)

Missed speech and false alarm as fractions of the reference speech (DER convention), scored
inside the UEM, with a {args.collar} s collar either side of every boundary of the union of
the reference turns (NIST md-eval convention). Default `get_speech_timestamps` options for
both; the 8 kHz columns run the 8 kHz branch on audio resampled to 8 kHz.

{der}

Reproduce: `{cmd}` ({time.time() - t0:.0f} s on this machine).
"""
    if args.no_write:
        print(text)
    else:
        write_section("eval", text)
        print(text)
        print(f"wrote {REPORT}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
