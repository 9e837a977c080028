#!/usr/bin/env python
"""SI-SDR / SI-SDRi (permutation-invariant) of a separation model on mixtures made by
tools/make_mixtures.py.

    python tools/eval_separation.py --mixtures /tmp/mix2 --model weights/mossformer2-ss-16k
    python tools/eval_separation.py --mixtures /tmp/mix2 --oracle   # harness check: est = refs

Only meaningful with real weights (random weights give noise). Prints one line per mixture
and the means; --out writes them as markdown.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import mlx_audio_stack  # noqa: F401  (fast BLAS first)
from mlx_audio_stack.evaluation.separation import load_mixture, si_sdr_improvement


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--mixtures", required=True, type=Path)
    ap.add_argument("--model", help="converted MossFormer2 folder")
    ap.add_argument("--oracle", action="store_true", help="use the true sources as estimates")
    ap.add_argument("--chunk", type=float, default=None, help="chunked inference window (s)")
    ap.add_argument("--out", type=Path, help="write a markdown table here")
    a = ap.parse_args()
    if not a.oracle and not a.model:
        ap.error("--model or --oracle is required")
    model = None
    if a.model:
        from mlx_audio_stack.models.mossformer2 import load_model

        model = load_model(a.model)
    rows = []
    for d in sorted(p for p in a.mixtures.iterdir() if (p / "mix.wav").exists()):
        mix, refs, sr = load_mixture(d)
        if a.oracle:
            est = refs[::-1].copy()  # reversed order: PIT must undo it
        else:
            from mlx_audio_stack.models.mossformer2 import separate

            est = separate(mix, model, input_sr=sr, num_spks=refs.shape[0], chunk_s=a.chunk)
            if model.sample_rate != sr:
                from mlx_audio_stack.audio import resample

                est = np.stack([resample(e, model.sample_rate, sr)[: mix.size] for e in est])
        r = si_sdr_improvement(est, refs, mix)
        rows.append((d.name, r))
        print(f"{d.name}: SI-SDR {r['si_sdr']:.2f} dB  SI-SDRi {r['si_sdri']:.2f} dB")
    if not rows:
        raise SystemExit(f"{a.mixtures}: no mixtures (run tools/make_mixtures.py)")
    m_sdr = np.mean([r["si_sdr"] for _, r in rows])
    m_sdri = np.mean([r["si_sdri"] for _, r in rows])
    print(f"mean over {len(rows)}: SI-SDR {m_sdr:.2f} dB  SI-SDRi {m_sdri:.2f} dB")
    if a.out:
        lines = ["| mixture | SI-SDR (dB) | SI-SDRi (dB) |", "|---|---:|---:|"]
        lines += [f"| {n} | {r['si_sdr']:.2f} | {r['si_sdri']:.2f} |" for n, r in rows]
        lines.append(f"| **mean** | {m_sdr:.2f} | {m_sdri:.2f} |")
        a.out.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
