#!/usr/bin/env python
"""Build reproducible 2-/3-speaker mixtures from the shared LibriSpeech data.

    python tools/make_mixtures.py --out /tmp/mix2 --n 20 --spks 2 --seconds 4 --overlap 0.5 \
        [--snr 5] [--seed 0]

Writes <out>/mixNNNN/{mix,s1,s2[,s3]}.wav and <out>/mixtures.json (speakers, utterances,
offsets, gains, seed). Same arguments -> same files.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import mlx_audio_stack  # noqa: F401  (fast BLAS first)
from mlx_audio_stack.evaluation.separation import make_mixtures
from mlx_audio_stack.paths import data_dir


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--spks", type=int, default=2, choices=[2, 3])
    ap.add_argument("--seconds", type=float, default=4.0, help="length of each source")
    ap.add_argument("--overlap", type=float, default=1.0, help="overlap ratio 0..1")
    ap.add_argument("--snr", type=float, default=None, help="add DEMAND noise at this SNR (dB)")
    ap.add_argument("--sr", type=int, default=16000)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    data = data_dir()
    if data is None:
        raise SystemExit("shared data not found: set MAS_DATA_DIR")
    specs = make_mixtures(data, a.out, a.n, a.spks, a.seconds, a.overlap, a.snr, a.sr, a.seed)
    print(f"wrote {len(specs)} mixtures to {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
