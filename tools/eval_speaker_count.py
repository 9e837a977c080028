#!/usr/bin/env python
"""Evaluate the speaker-count / overlap detector -> reports/speaker_count.md.

    python tools/eval_speaker_count.py [--weights DIR]

1. Held-out mixtures: the test split of tools/train_speaker_count.py, regenerated in memory
   with the same seed (speakers never trained on; held-out DEMAND noise and AMI silences):
   frame accuracy per SNR / reverberation / overlap bucket beside the majority-class
   baseline, per-class recall, the confusion matrix, overlap precision / recall.
2. The 10 AMI clips (debug.train.rttm, scored region from debug.train.uem): frame-level
   overlap (>= 2 speakers) and speech (>= 1) precision / recall / F1, at the threshold
   stored with the weights (chosen on the synthetic validation split, not on AMI) and a
   threshold sweep; speaker-count accuracy.
3. Cost: RTF of `count` (whole file) and of the stream (0.5 s chunks) on this CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's package
import mlx_audio_stack  # noqa: E402, F401  (fast BLAS first)
from mlx_audio_stack._blas import cpu_model  # noqa: E402
from mlx_audio_stack.audio import load_audio  # noqa: E402
from mlx_audio_stack.evaluation import count_mixtures as simulate  # noqa: E402
from mlx_audio_stack.evaluation import rttm as ami  # noqa: E402
from mlx_audio_stack.evaluation.count_dataset import generate_split  # noqa: E402
from mlx_audio_stack.models.silero_vad import load_vad  # noqa: E402
from mlx_audio_stack.models.speaker_count import load_speaker_counter  # noqa: E402
from mlx_audio_stack.models.speaker_count.train import overlap_prf  # noqa: E402
from mlx_audio_stack.paths import REPO_ROOT, data_dir, weights_dir  # noqa: E402

NOTES = """## Notes

- Plainly: on the real AMI clips the detector is weak at overlap. Far-field meeting overlap
  is mostly short, quiet back-channel speech under a louder talker, which the LibriSpeech
  mixtures (two or three read-speech talkers within 10 dB) do not teach; it under-counts
  (true 2 -> predicted 1 is its most common AMI error). Its precision is still about twice
  the always-overlap precision, and speech (>= 1) detection is usable. For the pipeline:
  threshold 0.3 trades precision for recall on AMI (see the sweep); no threshold here was
  chosen on AMI.
- History (what changed after the first look at AMI, so these AMI figures are not fully
  blind): the first shipped weights (commit a8b4799) had a precision-first threshold (0.85:
  AMI overlap precision 0.67, recall 0.015) and AMI overlap P / R 0.27 / 0.24 at 0.5, frame
  count accuracy 68.7 %. The current training uses quieter mixtures (-50..-18 dBFS instead
  of -40..-18), more reverberation (70 % of clips instead of 50 %) and the best-F1
  validation threshold. The AMI clips themselves are never used in training; their
  silences serve as noise for the held-out test mixtures only.
- Data finding: 4 of the 6 VoiceBank-DEMAND noise signals (noisy minus clean, p287_001-004)
  are babble: Silero VAD calls 97-99 % of their chunks speech. Used as '0 speakers' noise
  they taught the model that noise is people (validation balanced accuracy 0.45 -> 0.56 and
  frame accuracy 0.49 -> 0.73 once they were screened out). The screen (Silero speech share
  >= 50 %) runs in the training command and applies to the AMI silences too.
- Labels are Silero VAD activity of each clean source (not an energy rule); AMI reference
  counts come from RTTM turns with the same half-frame rule. FSDD was not used (8 kHz
  isolated digits).
- The QA gate checks clip-level labels (`labels.speaker_count` = the most simultaneous
  talkers in the clip: class balance, drift, speaker-disjoint splits, overlap present and
  consistent with the speakers listed). The frame labels live in `extra.frame_labels` of
  the same manifest, so the gate's hash binds them, but no QA check reads them.
"""


def prf(hyp: np.ndarray, ref: np.ndarray) -> tuple[float, float, float]:
    tp = float(np.sum(hyp & ref))
    p, r = tp / max(1.0, float(hyp.sum())), tp / max(1.0, float(ref.sum()))
    return p, r, 2 * p * r / max(1e-9, p + r)


def confusion(pred: np.ndarray, ref: np.ndarray) -> np.ndarray:
    c = np.zeros((4, 4), dtype=np.int64)
    np.add.at(c, (np.minimum(ref, 3), pred), 1)
    return c


def conf_table(c: np.ndarray) -> list[str]:
    lines = ["| true \\ predicted | 0 | 1 | 2 | 3+ | recall |", "|---|---:|---:|---:|---:|---:|"]
    for k in range(4):
        tot = max(1, c[k].sum())
        lines.append(
            f"| {k if k < 3 else '3+'} | "
            + " | ".join(str(v) for v in c[k])
            + f" | {c[k, k] / tot:.1%} |"
        )
    return lines


def eval_synthetic(det, data: Path, seed: int, n: int, thr: float, majority: int) -> list[str]:
    vad = load_vad(weights_dir() / "silero-vad")
    utts = simulate.load_utterances(data, vad)
    noises = simulate.load_noises(data, "test", vad, lambda: ami.ami_silences(data))
    rows, labels = [], {}
    for rec, audio, counts in generate_split("test", n, seed, utts["test"], noises):
        p = det.count(audio)
        rows.append((rec["extra"], counts, p))
        labels[rec["id"]] = rec["extra"]["frame_labels"]
    same = "(training run's manifest not found under build/: not compared)"
    built = REPO_ROOT / "build/speaker_count/mixtures.jsonl"
    if built.exists():
        from mlx_audio_stack.data.manifest import read_manifest

        ref_labels = {
            r["id"]: r["extra"]["frame_labels"]
            for r in read_manifest(built).records
            if r["split"] == "test"
        }
        same = (
            "identical to the test split of the training run's manifest"
            if ref_labels == labels
            else "DIFFERENT from the test split of build/speaker_count/mixtures.jsonl"
        )
    ref = np.concatenate([c for _, c, _ in rows])
    prob = np.concatenate([p for *_, p in rows])
    pred = prob.argmax(-1)

    def acc_line(name: str, sel) -> str:
        m = np.concatenate([np.full(c.size, bool(sel(e, c))) for e, c, _ in rows])
        if not m.any():
            return f"| {name} | 0 | | | |"
        po = prf(prob[m][:, 2:].sum(-1) >= thr, ref[m] >= 2)
        return (
            f"| {name} | {m.sum()} | {np.mean(pred[m] == ref[m]):.1%} | "
            f"{np.mean(ref[m] == majority):.1%} | {po[0]:.2f} / {po[1]:.2f} |"
        )

    def ovl(c):
        return np.mean(c >= 2)

    out = [
        f"{len(rows)} clips of 6 s ({ref.size} frames of 0.1 s), speakers never trained on "
        f"({', '.join(simulate.TEST_SPEAKERS)}); noise: the held-out part of the DEMAND noise, "
        "synthetic noise, AMI silences; 70 % with synthetic reverberation. Majority-class "
        f"baseline: always predict {majority} speaker(s) (the most frequent training frame label).",
        f"Clips and labels regenerated with seed {seed}: {same}.",
        "",
        f"| condition | frames | accuracy | majority baseline | overlap P / R @ {thr} |",
        "|---|---:|---:|---:|---:|",
        acc_line("all", lambda e, c: True),
    ]
    for lo, hi in ((0, 5), (5, 10), (10, 15), (15, 20)):
        out.append(
            acc_line(
                f"SNR {lo}-{hi} dB",
                lambda e, c, lo=lo, hi=hi: e["snr_db"] is not None and lo <= e["snr_db"] < hi,
            )
        )
    out.append(acc_line("no speech (noise only)", lambda e, c: e["snr_db"] is None))
    out.append(acc_line("dry", lambda e, c: not e["reverb"]))
    out.append(acc_line("reverberant", lambda e, c: e["reverb"]))
    out.append(acc_line("AMI-silence noise", lambda e, c: e["noise"].startswith("ami")))
    out.append(acc_line("clip overlap 0 %", lambda e, c: ovl(c) == 0))
    out.append(acc_line("clip overlap 0-25 %", lambda e, c: 0 < ovl(c) <= 0.25))
    out.append(acc_line("clip overlap 25-50 %", lambda e, c: 0.25 < ovl(c) <= 0.5))
    out.append(acc_line("clip overlap > 50 %", lambda e, c: ovl(c) > 0.5))
    op, orr, of = overlap_prf(prob[:, 2:].sum(-1), ref, thr)
    sp = prf(prob[:, 1:].sum(-1) >= 0.5, ref >= 1)
    out += [
        "",
        f"Overlap (>= 2) frames at threshold {thr}: precision {op:.3f}, recall {orr:.3f}, "
        f"F1 {of:.3f} (prevalence {np.mean(ref >= 2):.1%}). Speech (>= 1) at 0.5: precision "
        f"{sp[0]:.3f}, recall {sp[1]:.3f}, F1 {sp[2]:.3f}.",
        "",
        "Confusion matrix (frames):",
        "",
        *conf_table(confusion(pred, ref)),
    ]
    return out


def eval_ami(det, data: Path, thr: float) -> tuple[list[str], dict]:
    folder = data / "ami_meeting_clips"
    rttm = ami.read_rttm(folder / "debug.train.rttm")
    uem = ami.read_uem(folder / "debug.train.uem")
    refs, probs, per = [], [], []
    for wav in sorted(folder.glob("trn*.wav")):
        x = load_audio(wav)
        p = det.count(x)
        ref = ami.frame_counts(rttm.get(wav.stem, []), p.shape[0])
        keep = ami.uem_mask(uem.get(wav.stem, [(0.0, x.size / 16000)]), p.shape[0])
        refs.append(ref[keep])
        probs.append(p[keep])
        o = prf(p[keep][:, 2:].sum(-1) >= thr, ref[keep] >= 2)
        per.append(
            f"| {wav.stem} | {keep.sum()} | {np.mean(ref[keep] >= 2):.0%} | "
            f"{np.mean(p[keep][:, 2:].sum(-1) >= thr):.0%} | {o[0]:.2f} | {o[1]:.2f} |"
        )
    ref = np.concatenate(refs)
    prob = np.concatenate(probs)
    p_ov, p_sp = prob[:, 2:].sum(-1), prob[:, 1:].sum(-1)
    o = prf(p_ov >= thr, ref >= 2)
    s = prf(p_sp >= 0.5, ref >= 1)
    acc = float(np.mean(prob.argmax(-1) == np.minimum(ref, 3)))
    out = [
        f"{len(refs)} clips, {ref.size} scored frames of 0.1 s (UEM: whole 30 s); a speaker "
        "counts in a frame its RTTM turns cover for at least half of it (the training rule). "
        f"Overlap prevalence {np.mean(ref >= 2):.1%}, speech {np.mean(ref >= 1):.1%}.",
        "",
        "| task | threshold | precision | recall | F1 | always-yes precision |",
        "|---|---:|---:|---:|---:|---:|",
        f"| overlap (>= 2 speakers) | {thr} (validation-chosen) | {o[0]:.3f} | {o[1]:.3f} | "
        f"{o[2]:.3f} | {np.mean(ref >= 2):.3f} |",
    ]
    for t in (0.3, 0.5, 0.7, 0.9):
        oo = prf(p_ov >= t, ref >= 2)
        out.append(f"| overlap (>= 2 speakers) | {t} | {oo[0]:.3f} | {oo[1]:.3f} | {oo[2]:.3f} | |")
    out += [
        f"| speech (>= 1 speaker) | 0.5 | {s[0]:.3f} | {s[1]:.3f} | {s[2]:.3f} | "
        f"{np.mean(ref >= 1):.3f} |",
        "",
        f"Speaker-count accuracy (0/1/2/3+ per frame): {acc:.1%}; majority baseline "
        f"(always the most frequent AMI count, {np.bincount(np.minimum(ref, 3)).argmax()}): "
        f"{np.bincount(np.minimum(ref, 3)).max() / ref.size:.1%}.",
        "",
        *conf_table(confusion(prob.argmax(-1), ref)),
        "",
        f"Per clip (overlap at {thr}):",
        "",
        "| clip | frames | true overlap | flagged | precision | recall |",
        "|---|---:|---:|---:|---:|---:|",
        *per,
    ]
    return out, {"overlap": o, "speech": s, "acc": acc}


def cost(det, data: Path) -> list[str]:
    x = load_audio(data / "ami_meeting_clips" / "trn00.wav")
    dur = x.size / 16000
    t_off, t_str = [], []
    for _ in range(6):  # the first run of each mode is a warm-up (librosa import, allocations)
        t = time.perf_counter()
        det.count(x)
        t_off.append(time.perf_counter() - t)
        t = time.perf_counter()
        st = det.init_state()
        for i in range(0, x.size, 8000):
            st, _ = det.step(st, x[i : i + 8000])
        det.flush(st)
        t_str.append(time.perf_counter() - t)
    t_off, t_str = t_off[1:], t_str[1:]
    return [
        f"CPU: {cpu_model()} ({os.cpu_count()} cores, shared with other jobs during the run: the "
        "median moves with their load, the minimum is closer to the detector's own cost). "
        f"Audio: {dur:.0f} s AMI clip, 5 runs after a warm-up.",
        "",
        "| mode | median s | median RTF | min RTF |",
        "|---|---:|---:|---:|",
        f"| count (whole file) | {np.median(t_off):.3f} | {np.median(t_off) / dur:.4f} | "
        f"{min(t_off) / dur:.4f} |",
        f"| stream, 0.5 s chunks | {np.median(t_str):.3f} | {np.median(t_str) / dur:.4f} | "
        f"{min(t_str) / dur:.4f} |",
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--weights", type=Path, default=None, help="default: the shipped weights")
    ap.add_argument("--n-test", type=int, default=400)
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "reports/speaker_count.md")
    a = ap.parse_args()
    data = data_dir()
    if data is None:
        raise SystemExit("shared data not found: set MAS_DATA_DIR")
    det = load_speaker_counter(a.weights)
    cfg = det.config
    tr = cfg.get("training", {})
    thr = float(cfg.get("overlap_threshold", 0.5))
    seed = int(tr.get("seed", 0))
    summ_path = (a.weights or REPO_ROOT / "mlx_audio_stack/assets/speaker_count") / (
        "training_summary.json"
    )
    summ = json.loads(summ_path.read_text()) if summ_path.exists() else {}
    train_frames = summ.get("splits", {}).get("train", {}).get("frames", {"1": 1})
    majority = int(max(train_frames, key=lambda k: train_frames[k]))
    syn = eval_synthetic(det, data, seed, a.n_test, thr, majority)
    ami_lines, ami_m = eval_ami(det, data, thr)
    cost_lines = cost(det, data)
    args = det.args
    lines = [
        "# Speaker counter / overlap detector",
        "",
        "Regenerate: `python tools/eval_speaker_count.py` "
        "(weights: `mlx_audio_stack/assets/speaker_count`, trained by "
        "`python tools/train_speaker_count.py`; numbers below are from one run).",
        "",
        f"Model: log-mel ({args.n_mels} bands, 25 ms / 10 ms) -> 0.1 s tokens -> Linear -> "
        f"{len(args.dilations)} dilated residual convs (hidden {args.hidden}, kernel "
        f"{args.kernel_size}, dilations {list(args.dilations)}) -> 4 classes; window "
        f"{args.receptive_field * 0.1:.1f} s ({det.lead / 10:.1f} s before the frame, "
        f"{args.lookahead / 10:.1f} s after); "
        f"{sum(p.stat().st_size for p in Path(det_dir(a)).iterdir()) / 1024:.0f} KB shipped "
        "(float16 on disk). Output: per 0.1 s frame, P(0), P(1), P(2), P(3+); overlap = "
        "P(2) + P(3+) >= threshold. Training data, QA verdict and metrics: "
        "`training_summary.json` and `config.json` beside the weights.",
        "",
        f"Training: seed {seed}; {tr.get('data', '')}. Labels: {tr.get('labels', '')}. "
        f"QA gate: {tr.get('qa', {}).get('state')} ({tr.get('qa', {}).get('reason', '')}). "
        f"Training run time: {tr.get('times_s', {})}.",
        "",
        "## Held-out synthetic mixtures",
        "",
        *syn,
        "",
        "## Real AMI meeting clips",
        "",
        *ami_lines,
        "",
        "## Cost",
        "",
        *cost_lines,
        "",
        NOTES,
    ]
    a.out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=str(a.out.parent), prefix=".speaker_count.")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    os.replace(tmp, a.out)
    print(f"wrote {a.out}; AMI overlap P/R/F1 {ami_m['overlap']}, speech {ami_m['speech']}")
    return 0


def det_dir(a) -> Path:
    return a.weights or REPO_ROOT / "mlx_audio_stack/assets/speaker_count"


if __name__ == "__main__":
    raise SystemExit(main())
