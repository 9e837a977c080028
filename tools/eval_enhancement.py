"""Noise in the room: does running single-speaker speech through a separator first help
Whisper? (issue 18: WHAMR!-variant separator vs plain separator vs no enhancement)

    python tools/eval_enhancement.py --meetings /tmp/mas_meetings --names 'm1spk*'

Input: the 1-speaker meetings of tools/make_meetings.py (real LibriSpeech speech, room
reverberation, DEMAND and AMI noise at 0/5/10/20 dB SNR, reference text). Arms, each
transcribed whole by plain `transcribe()` with the same Whisper weights and scored by WER
(jiwer, after openai-whisper's English normaliser, as tools/eval_pipeline.py):

    none    the noisy mix as it is
    plain   MossFormer2 (weights/mossformer2-ss-16k): of its 2 outputs, the one in which Silero
            VAD hears more speech
    whamr   MossFormer2's WHAMR! variant, trained on noisy reverberant mixtures
            (weights/mossformer2-whamr-16k), same pick
    source  the speaker's true reverberant source without noise: the ceiling

An arm whose weights are missing is reported as not run, with the command that fetches them
(the real separator weights are on the Hugging Face hub only). `--random` runs such an arm with
random weights in the real layout instead: its time counts, its WER does not. Writes
reports/enhancement.md (and its rows as .json) atomically.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tools")]

ARMS = ("none", "plain", "whamr", "source")
WEIGHTS = {"plain": "mossformer2-ss-16k", "whamr": "mossformer2-whamr-16k"}


def load_separator(arm: str, random: bool):
    """(model, label), or (None, reason) when its weights are missing and not `random`."""
    from mlx_audio_stack.models.mossformer2 import load_model
    from mlx_audio_stack.paths import weights_dir

    folder = weights_dir() / WEIGHTS[arm]
    if (folder / "config.json").exists():
        return load_model(folder), f"{WEIGHTS[arm]} (real weights)"
    if not random:
        fetch = f"`mas weights get {WEIGHTS[arm]}` on a connected machine"
        where = folder.relative_to(ROOT) if folder.is_relative_to(ROOT) else folder
        return None, f"no weights at {where} ({fetch})"
    from _pipeline_jobs import random_mossformer2

    m = random_mossformer2(2, whamr=arm == "whamr")
    return m, f"{WEIGHTS[arm]} at random weights (cost only)"


def pick_speech(sources, vad) -> tuple[int, list[float]]:
    """The source Silero VAD hears more speech in (mean speech probability)."""
    from mlx_audio_stack.models.silero_vad.offline import speech_probs

    scores = [float(speech_probs(vad, s).mean()) for s in sources]
    return max(range(len(scores)), key=scores.__getitem__), scores


def meeting_input(folder: Path, seconds: float | None):
    """(mix, true source, reference text, audio s): the whole meeting, or its utterances that
    end within the first `seconds` (cut at the last one's end)."""
    import _meeting_metrics as M  # noqa: N812
    import soundfile as sf

    m = M.load_meeting(folder)
    if len(m["meta"]["speakers"]) != 1:
        raise SystemExit(f"{folder}: not a 1-speaker meeting")
    if m["sources"] is None:
        raise SystemExit(f"{folder}: no sources.npy (true source)")
    mix, sr = sf.read(str(m["mix"]), dtype="float32")
    utts = m["meta"]["utterances"]
    if seconds is not None:
        utts = [u for u in utts if u["end"] <= seconds] or utts[:1]
        n = int(round((utts[-1]["end"] + 0.2) * sr))
        mix = mix[:n]
    n = min(mix.size, m["sources"].shape[1])
    text = " ".join(u["text"] for u in utts)
    return m, mix[:n], m["sources"][0, :n], text, n / sr


def run(args) -> dict:
    import _meeting_metrics as M  # noqa: N812
    from _pipeline_report import commit, cpu_model

    from mlx_audio_stack.models.mossformer2 import separate
    from mlx_audio_stack.models.silero_vad.load import load_vad
    from mlx_audio_stack.models.whisper.transcribe import transcribe
    from mlx_audio_stack.paths import weights_dir

    folders = sorted({p for g in args.names for p in args.meetings.glob(g)})
    folders = [f for f in folders if (f / "meta.json").exists()]
    if not folders:
        raise SystemExit(f"{args.meetings}: no meeting matches {args.names}")
    vad = load_vad(weights_dir() / "silero-vad")
    seps, arms = {}, list(args.arms)
    for arm in arms:
        if arm in WEIGHTS:
            seps[arm] = load_separator(arm, args.random)
    rows = []
    for folder in folders:
        m, mix, source, text, audio_s = meeting_input(folder, args.seconds)
        row = {"meeting": m["name"], "snr_db": m["meta"]["snr_db"], "audio_s": audio_s, "arms": {}}
        for arm in arms:
            if arm in seps and seps[arm][0] is None:
                continue
            t0 = time.perf_counter()
            extra = {}
            if arm == "none":
                audio = mix
            elif arm == "source":
                audio = source
            else:
                out = separate(mix, seps[arm][0], normalize=True)
                k, scores = pick_speech(out, vad)
                audio, extra = out[k], {"picked": k, "vad_scores": scores}
            sep_s = time.perf_counter() - t0
            hyp = transcribe(audio, args.whisper)["text"]
            row["arms"][arm] = {
                **M.wer([text], [hyp]),
                "enhance_s": round(sep_s, 2),
                "asr_s": round(time.perf_counter() - t0 - sep_s, 2),
                **extra,
            }
            print(f"{m['name']} {arm}: WER {row['arms'][arm]['wer']:.3f}", file=sys.stderr)
        rows.append(row)
    return {
        "rows": rows,
        "arms": arms,
        "separators": {a: s[1] for a, s in seps.items()},
        "whisper": args.whisper or "the pipeline's default (tiny.en first)",
        "command": "python tools/eval_enhancement.py " + shlex.join(sys.argv[1:]),
        "cpu": cpu_model(),
        "commit": commit(),
    }


def report(res: dict) -> list[str]:
    from _pipeline_report import num, pct

    arms, rows = res["arms"], res["rows"]
    real = {a for a, lab in res["separators"].items() if "real weights" in lab}
    ran = [a for a in arms if any(a in r["arms"] for r in rows)]

    def pooled(arm):
        rs = [r["arms"][arm] for r in rows if arm in r["arms"]]
        words = sum(x["words"] for x in rs)
        return sum(x["errors"] for x in rs) / words if words else float("nan")

    seps = [a for a in ran if a in WEIGHTS]
    rows = sorted(rows, key=lambda r: (-r["snr_db"], r["meeting"]))
    lines = [
        "# Noisy single-speaker speech: separator first, or not? (issue 18)",
        "",
        "Written by `tools/eval_enhancement.py`. Each arm's audio is transcribed whole by plain "
        "`transcribe()` (Whisper: " + res["whisper"] + "); WER with jiwer after openai-whisper's "
        "English normaliser. `plain` / `whamr`: MossFormer2 and its WHAMR! variant, of whose "
        "two outputs the one Silero VAD hears more speech in is kept; `source`: the true "
        "reverberant source without noise (the ceiling).",
        "",
        f"Command: `{res['command']}`",
        "",
        f"Machine: {res.get('cpu', 'not recorded')}, MLX CPU backend. "
        f"Code: {res.get('commit', 'not recorded')}.",
        "",
        "Separators: "
        + (
            "; ".join(f"{a}: {lab}" for a, lab in sorted(res["separators"].items()))
            or "none asked for"
        )
        + ".",
        "",
        "| meeting | SNR | audio s | "
        + " | ".join(f"WER {a}" for a in ran)
        + (f" | separation wall s / audio s ({' / '.join(seps)})" if seps else "")
        + " |",
        "|---|---:|---:|" + "---:|" * (len(ran) + bool(seps)),
    ]
    for r in rows:
        sep = [r["arms"][a]["enhance_s"] / r["audio_s"] for a in seps if a in r["arms"]]
        lines.append(
            f"| {r['meeting']} | {r['snr_db']:g} dB | {r['audio_s']:.0f} | "
            + " | ".join(pct(r["arms"][a]["wer"]) if a in r["arms"] else "–" for a in ran)
            + (f" | {' / '.join(num(x) for x in sep)}" if seps else "")
            + " |"
        )
    lines.append(
        "| **pooled** | | "
        + f"{sum(r['audio_s'] for r in rows):.0f} | "
        + " | ".join(f"**{pct(pooled(a))}**" for a in ran)
        + (" | |" if seps else " |")
    )
    cand = [a for a in ("none", *sorted(real)) if a in ran]
    best = min(cand, key=pooled) if cand else None
    missing = [a for a in ("plain", "whamr") if a in arms and a not in real]
    lines += [""]
    if "none" in ran and "source" in ran:
        lines += [
            f"The most any enhancement could win here: from {pct(pooled('none'))} (the noisy "
            f"mix) to {pct(pooled('source'))} (the speaker without the noise), pooled.",
            "",
        ]
    if missing:
        lines.append(
            "Not decided here, for want of real weights: "
            + "; ".join(f"`{a}`: {res['separators'].get(a, 'not asked for')}" for a in missing)
            + ". A random-weight arm's WER says nothing (it measures only cost). The pipeline "
            "runs without enhancement until this table, with real weights, shows a separator "
            "that lowers WER."
        )
    if best and not missing:
        lines.append(
            f"Lowest pooled WER: `{best}` ({pct(pooled(best))}); the pipeline should run "
            + ("without enhancement." if best == "none" else f"`{best}` before the VAD.")
        )
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--meetings", type=Path, default=Path("/tmp/mas_meetings"))
    ap.add_argument("--names", nargs="+", default=["m1spk*"])
    ap.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    ap.add_argument("--random", action="store_true", help="arms without weights: random ones")
    ap.add_argument("--seconds", type=float, help="only the first N seconds' utterances")
    ap.add_argument("--whisper", help="Whisper weights folder (default: the pipeline's)")
    ap.add_argument("--out", type=Path, default=ROOT / "reports" / "enhancement.md")
    ap.add_argument("--render", action="store_true", help="rewrite the report from its .json")
    args = ap.parse_args()
    import mlx_audio_stack  # noqa: F401  (fast BLAS before MLX)

    res = json.loads(args.out.with_suffix(".json").read_text()) if args.render else run(args)
    for path, text in (
        (args.out.with_suffix(".json"), json.dumps(res, indent=1) + "\n"),
        (args.out, "\n".join(report(res)) + "\n"),
    ):
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
