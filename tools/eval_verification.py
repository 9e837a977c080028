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

`--protocol pairs` (issue 15, written for the voice encoder with its real weights):
- LibriSpeech test-other, 10 speakers x 10 utterances, every pair (450 target, 4500 non-target);
- the 254 single-utterance speakers of librispeech_untranscribed, each utterance cut into two
  halves: the two halves of a speaker are a target trial (254), every pair of halves of
  different speakers a non-target trial;
with `--reference resemblyzer` the same trials scored with resemblyzer's own (torch)
embeddings, and `--out` writing that section of reports/voice_encoder.md:

    python tools/eval_verification.py --model weights/voice-encoder --protocol pairs \
        --reference resemblyzer --out reports/voice_encoder.md

With random weights the figures say nothing about the port (a random full-size ECAPA still
reached about 21% EER on the LibriSpeech list from spectral statistics alone); the harness is
tested on embeddings whose answer is known (tests/test_ecapa_model.py) and is ready for real
weights.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # this checkout's package, not an installed one
    sys.path.insert(0, str(ROOT))
import mlx_audio_stack  # noqa: F401, E402  (fast BLAS before mlx)

MARK = "<!-- speed: tools/bench_voice_encoder.py -->"  # the benchmark's section starts here


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

    from mlx_audio_stack.evaluation.verification import compute_eer, compute_min_dcf, make_trials
    from mlx_audio_stack.models.ecapa.scoring import cosine_score, normalize_scores

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


def pairs_lists(data: Path):
    """Issue 15's lists: (test-other files, speakers), (untranscribed files, speakers)."""
    test = sorted((data / "librispeech" / "test-other").rglob("*.flac"))
    root = data / "librispeech_untranscribed"
    extra = sorted(f for f in root.rglob("*") if f.suffix in (".flac", ".wav"))
    return (test, [f.name.split("-")[0] for f in test]), (extra, [f.stem for f in extra])


def all_pair_scores(emb, speakers):
    """Every pair i < j: (target scores, non-target scores) of raw cosine."""
    import numpy as np

    from mlx_audio_stack.models.ecapa.scoring import cosine_matrix

    s = cosine_matrix(emb, emb)
    spk = np.asarray(speakers)
    iu = np.triu_indices(len(spk), 1)
    same = spk[iu[0]] == spk[iu[1]]
    return s[iu][same], s[iu][~same]


def metrics(target, nontarget) -> dict:
    from mlx_audio_stack.evaluation.verification import compute_eer, compute_min_dcf

    eer, thr = compute_eer(target, nontarget)
    return {
        "EER": eer,
        "threshold": thr,
        "minDCF(0.01)": compute_min_dcf(target, nontarget, 0.01)[0],
        "targets": len(target),
        "nontargets": len(nontarget),
    }


def run_pairs(embed_fns: dict, data: Path, max_seconds: float) -> dict:
    """{system: {list: metrics}} for issue 15's two lists; `embed_fns`: name -> fn(wavs)."""
    import numpy as np

    from mlx_audio_stack.audio import load_audio

    (test, tspk), (extra, espk) = pairs_lists(data)
    n_max = int(max_seconds * 16000)
    test_w = [load_audio(f)[:n_max] for f in test]
    halves, hspk = [], []
    for f, spk in zip(extra, espk):
        w = load_audio(f)
        mid = w.size // 2
        halves += [w[:mid][:n_max], w[mid:][:n_max]]
        hspk += [spk, spk]
    out, scores = {}, {}
    for name, fn in embed_fns.items():
        lists = {
            "test-other, 10 spk x 10 utts, all pairs": all_pair_scores(fn(test_w), tspk),
            f"untranscribed, {len(extra)} spk, two halves each": all_pair_scores(fn(halves), hspk),
        }
        out[name] = {k: metrics(*v) for k, v in lists.items()}
        scores[name] = np.concatenate([np.concatenate(v) for v in lists.values()])
    if len(scores) == 2:  # the same trials scored by both systems
        a, b = scores.values()
        out["max |score difference|"] = float(np.abs(a - b).max())
    return out


def resemblyzer_embed(wavs):
    """resemblyzer's own embed_utterance (torch), one utterance at a time."""
    import numpy as np
    import torch
    from resemblyzer.voice_encoder import VoiceEncoder
    from tqdm import tqdm

    torch.set_num_threads(1)  # evaluation, not timing: no OpenMP barriers on a shared machine
    enc = VoiceEncoder("cpu", verbose=False)
    return np.stack([enc.embed_utterance(w) for w in tqdm(wavs, desc="resemblyzer")])


def pairs_report(results: dict, model: str, max_seconds: float, seconds: dict) -> list[str]:
    lines = [
        "## Speaker verification (real weights)",
        "",
        f"Model `weights/{Path(model).name}`; raw cosine scores; utterances cropped to "
        f"{max_seconds:g} s. Trials:",
        "LibriSpeech test-other, 10 speakers x 10 utterances, every pair; the single-utterance",
        "speakers of librispeech_untranscribed, each utterance cut into two halves (the halves",
        "of one speaker: a target trial; every pair of halves of two speakers: non-target).",
        "The reference row embeds the same arrays with resemblyzer's own torch",
        "`VoiceEncoder.embed_utterance`.",
        "",
        "| trial list | system | targets / non-targets | EER % | EER threshold | minDCF (p=0.01) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    diff = results.pop("max |score difference|", None)
    for name, lists in results.items():
        for lst, m in lists.items():
            lines.append(
                f"| {lst} | {name} | {m['targets']} / {m['nontargets']} | "
                f"{100 * m['EER']:.2f} | {m['threshold']:.4f} | {m['minDCF(0.01)']:.3f} |"
            )
    if diff is not None:
        lines += ["", f"The two systems' scores of the same trials differ by at most {diff:.1e}."]
    lines += [
        "",
        "Embedding time in this run: "
        + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items())
        + " (a shared machine; see the speed section for the benchmark).",
        "",
        "Reproduce: `python tools/eval_verification.py --model "
        f"weights/{Path(model).name} --protocol pairs "
        "--reference resemblyzer --out reports/voice_encoder.md`",
        "",
    ]
    return lines


def write_section(out: Path, lines: list[str]) -> None:
    """Write the verification section, keeping the benchmark's section (after MARK)."""
    old = out.read_text() if out.exists() else ""
    tail = MARK + old.split(MARK, 1)[1] if MARK in old else ""
    head = "# Voice encoder (Resemblyzer's GE2E LSTM) in MLX\n\n"
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(head + "\n".join(lines) + ("\n" + tail if tail else ""))
    tmp.replace(out)


def main(argv: list[str] | None = None) -> int:
    import numpy as np

    from mlx_audio_stack.audio import load_audio
    from mlx_audio_stack.embedders import load_embedder
    from mlx_audio_stack.paths import data_dir

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="converted embedder folder (either model)")
    p.add_argument("--protocol", default="standard", choices=["standard", "pairs"])
    p.add_argument(
        "--reference", choices=["resemblyzer"], help="pairs: also score resemblyzer's embeddings"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-seconds", type=float, default=8.0, help="crop utterances (speed)")
    p.add_argument("--nontarget", type=int, default=2000, help="non-target trials per list")
    p.add_argument("--out", help="also write the markdown table to this file")
    a = p.parse_args(argv)
    data = data_dir()
    if data is None:
        print("shared data not found: set MAS_DATA_DIR", file=sys.stderr)
        return 1
    enc = load_embedder(a.model)
    if a.protocol == "pairs":
        import time

        seconds: dict[str, float] = {}

        def timed(name, fn):
            def run(wavs):
                t0 = time.perf_counter()
                e = fn(wavs)
                seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - t0
                return e

            return run

        fns = {
            f"MLX ({enc.name})": timed(f"MLX ({enc.name})", lambda w: enc.embed(w, progress=True))
        }
        if a.reference == "resemblyzer":
            fns["resemblyzer (torch)"] = timed("resemblyzer (torch)", resemblyzer_embed)
        results = run_pairs(fns, data, a.max_seconds)
        lines = pairs_report(results, a.model, a.max_seconds, seconds)
        if a.out:
            write_section(Path(a.out), lines)
        print("\n".join(lines))
        return 0
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
