"""Speaker-verification evaluation: trial lists with a fixed seed from the shared real-speech
data, ECAPA embeddings, EER and minDCF (raw cosine and adaptive S-norm).

Trials (all from ../shared/data, see its README):
- LibriSpeech test-other: 10 speakers x 10 utterances -> every same-speaker pair is a target
  trial (450), plus different-speaker pairs;
- librispeech_untranscribed: 251+ speakers with one utterance each -> impostor-only
  utterances (non-target trials against test-other) and the S-norm cohort (disjoint halves);
- FSDD: 6 speakers at 8 kHz (resampled to 16 kHz), a second, harder condition (short digits).

    python tools/eval_verification.py --model weights/ecapa-voxceleb [--seed 0] \
        [--out table.md] [--max-seconds 8]

With random weights the figures say nothing about the port (a random full-size ECAPA still
reached about 21% EER on the LibriSpeech list from spectral statistics alone); the harness is
tested on embeddings whose answer is known (tests/test_ecapa_model.py) and is ready for real
weights.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import mlx_audio_stack  # noqa: F401  (fast BLAS before mlx)


def librispeech_lists(data: Path, seed: int):
    """(files, speakers, impostor_only) for test-other + untranscribed, and cohort files."""
    import numpy as np

    test = sorted((data / "librispeech" / "test-other").rglob("*.flac"))
    spk = [f.name.split("-")[0] for f in test]
    extra = sorted((data / "librispeech_untranscribed").rglob("*.flac"))
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(extra))
    imp = [extra[i] for i in order[: len(extra) // 2]]
    cohort = [extra[i] for i in order[len(extra) // 2 :]]
    files = test + imp
    speakers = spk + [f"untranscribed-{f.stem}" for f in imp]
    impostor_only = [False] * len(test) + [True] * len(imp)
    return files, speakers, impostor_only, cohort


def fsdd_lists(data: Path, seed: int, per_speaker: int = 10):
    """(files, speakers) of FSDD: `per_speaker` random recordings of each of its 6 speakers."""
    import numpy as np

    rec = sorted((data / "fsdd" / "recordings").glob("*.wav"))
    by: dict[str, list[Path]] = {}
    for f in rec:
        by.setdefault(f.stem.split("_")[1], []).append(f)
    rng = np.random.default_rng(seed)
    files, speakers = [], []
    for s in sorted(by):
        pick = rng.choice(len(by[s]), size=min(per_speaker, len(by[s])), replace=False)
        files += [by[s][i] for i in sorted(pick)]
        speakers += [s] * len(pick)
    return files, speakers


def evaluate(emb, speakers, impostor_only, cohort_emb, seed: int, n_nontarget: int | None):
    """Score the trials -> dict of metrics (raw cosine and AS-norm)."""
    import numpy as np

    from mlx_audio_stack.models.ecapa.scoring import (
        compute_eer,
        compute_min_dcf,
        cosine_score,
        make_trials,
        normalize_scores,
    )

    trials = make_trials(speakers, n_nontarget, seed, impostor_only)
    e = np.array([t.enroll for t in trials])
    t = np.array([t.test for t in trials])
    lab = np.array([tr.target for tr in trials])
    out = {"trials": len(trials), "targets": int(lab.sum())}
    raw = cosine_score(emb[e], emb[t])
    variants = {"cosine": raw}
    if cohort_emb is not None and len(cohort_emb) >= 2:
        k = min(100, len(cohort_emb))
        variants["AS-norm"] = normalize_scores(raw, emb[e], emb[t], cohort_emb, "s-norm", k)
    for name, s in variants.items():
        out[name] = {
            "EER": compute_eer(s[lab], s[~lab])[0],
            "minDCF(0.01)": compute_min_dcf(s[lab], s[~lab], 0.01)[0],
        }
    return out


def main(argv: list[str] | None = None) -> int:
    import numpy as np

    from mlx_audio_stack.audio import load_audio
    from mlx_audio_stack.models.ecapa.embed import load_ecapa
    from mlx_audio_stack.paths import data_dir

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="converted ECAPA folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-seconds", type=float, default=8.0, help="crop utterances (speed)")
    p.add_argument("--nontarget", type=int, default=2000, help="non-target trials per list")
    p.add_argument("--out", help="also write the markdown table to this file")
    a = p.parse_args(argv)
    data = data_dir()
    if data is None:
        print("shared data not found: set MAS_DATA_DIR", file=sys.stderr)
        return 1
    enc = load_ecapa(a.model)
    n_max = int(a.max_seconds * 16000)

    def embed(files):
        from tqdm import tqdm

        return np.concatenate(
            [enc.embed(load_audio(f)[:n_max]) for f in tqdm(files, desc="embedding", leave=False)]
        )

    files, speakers, imp, cohort = librispeech_lists(data, a.seed)
    emb = embed(files)
    coh = embed(cohort)
    results = {
        "LibriSpeech test-other + untranscribed impostors": evaluate(
            emb, speakers, imp, coh, a.seed, a.nontarget
        )
    }
    ffiles, fspk = fsdd_lists(data, a.seed)
    femb = embed(ffiles)
    results["FSDD (8 kHz digits, 6 speakers)"] = evaluate(
        femb, fspk, [False] * len(fspk), coh, a.seed, min(a.nontarget, 1500)
    )

    lines = [
        "# ECAPA speaker verification",
        "",
        f"Model: `{a.model}`; seed {a.seed}; utterances cropped to {a.max_seconds} s; "
        "AS-norm cohort: the half of librispeech_untranscribed not used as impostors "
        "(top 100).",
        "",
        "| trial list | trials (targets) | scoring | EER % | minDCF (p=0.01) |",
        "|---|---:|---|---:|---:|",
    ]
    for name, r in results.items():
        for scoring in ("cosine", "AS-norm"):
            if scoring in r:
                m = r[scoring]
                lines.append(
                    f"| {name} | {r['trials']} ({r['targets']}) | {scoring} | "
                    f"{100 * m['EER']:.2f} | {m['minDCF(0.01)']:.3f} |"
                )
    lines += ["", f"Reproduce: `python tools/eval_verification.py --model {a.model}`", ""]
    if a.out:
        Path(a.out).write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
