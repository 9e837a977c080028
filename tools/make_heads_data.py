#!/usr/bin/env python
"""Manifests with real labels for the Whisper heads, from the shared real-speech data.

    python tools/make_heads_data.py --out .mas-cache/heads \
        [--mix 200,50,50] [--fsdd-per-speaker 5] [--seed 0] [--no-qa]

Writes into --out (one manifest per task family: the QA suite wants every record of a manifest
labelled for its task):
- gender.jsonl: every LibriSpeech utterance (test-other, test-clean, dev-clean and the 254
  one-utterance speakers of librispeech_untranscribed; sex from SPEAKERS.TXT) and the first
  N recordings of each FSDD speaker (gender from its metadata.py); label `gender`.
- speaking_rate.jsonl: the 105 transcribed LibriSpeech utterances; label `speaking_rate` from
  words per second of the transcript over the duration (taxonomy.speaking_rate).
- speaker_count/mixtures.jsonl + WAVs: 6 s mixtures of 0-3 real LibriSpeech speakers with
  0.1 s frame labels, noise at 0-20 dB SNR, reverberation (`evaluation/count_mixtures.py`
  and `dataset.py`, the speaker counter's own generator: Silero VAD weights needed).
Held-out speakers: the speaker counter's valid/test speakers (simulate.VALID_SPEAKERS /
TEST_SPEAKERS) keep those splits; every other speaker goes to test (20 %) or valid (10 %) by a
stable hash of its id, and a speaker held out of gender training is also left out of the
training mixtures. Each manifest then runs through the QA suite (the gate's verdict is stored
beside it) and is registered as derived data. Same arguments -> same bytes.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's package
import mlx_audio_stack  # noqa: E402, F401  (fast BLAS first)
from mlx_audio_stack.data import taxonomy  # noqa: E402
from mlx_audio_stack.data.adapters import ADAPTERS  # noqa: E402
from mlx_audio_stack.data.manifest import stable_fraction, write_manifest  # noqa: E402
from mlx_audio_stack.data.registry import (  # noqa: E402
    DERIVED_JSON,
    DerivedArtifact,
    register_derived,
)
from mlx_audio_stack.evaluation import count_mixtures as simulate  # noqa: E402
from mlx_audio_stack.paths import REPO_ROOT, data_dir, weights_dir  # noqa: E402


def speaker_split(speaker: str, seed: int = 0) -> str:
    """Held-out speakers: the speaker counter's valid/test speakers keep their split; others
    by a stable hash (test 20 %, valid 10 %)."""
    fixed = simulate.split_of(speaker)
    if fixed != "train":
        return fixed
    u = stable_fraction(f"heads:{speaker}", seed)
    return "test" if u < 0.2 else "valid" if u < 0.3 else "train"


def gender_records(data: Path, fsdd_per_speaker: int, seed: int) -> list[dict]:
    recs = ADAPTERS["librispeech"](data / "librispeech") + ADAPTERS["librispeech"](
        data / "librispeech_untranscribed"
    )
    fsdd = ADAPTERS["fsdd"](data / "fsdd")
    taken: Counter = Counter()
    for r in sorted(fsdd, key=lambda r: r["id"]):
        if taken[r["speaker"]] < fsdd_per_speaker:
            taken[r["speaker"]] += 1
            recs.append(r)
    out = []
    for r in recs:
        g = (r.get("labels") or {}).get("gender")
        if g is None:
            continue
        r = {k: v for k, v in r.items() if k != "text"}
        out.append({**r, "labels": {"gender": g}, "split": speaker_split(r["speaker"], seed)})
    return sorted(out, key=lambda r: r["id"])


def rate_records(data: Path, seed: int) -> list[dict]:
    out = []
    for r in ADAPTERS["librispeech"](data / "librispeech"):
        if not r.get("text"):
            continue
        words = len(r["text"].split())
        lab = taxonomy.speaking_rate(words, float(r["duration"]))
        extra = {**(r.get("extra") or {}), "words_per_second": round(words / r["duration"], 3)}
        out.append({**r, "labels": {"speaking_rate": lab}, "extra": extra})
    # 12 speakers only: split by a hash of the speaker (another partition than gender.jsonl's;
    # this manifest trains only the speaking-rate head)
    for r in out:
        u = stable_fraction(f"rate:{r['speaker']}", seed)
        r["split"] = "test" if u < 0.25 else "valid" if u < 0.45 else "train"
    return sorted(out, key=lambda r: r["id"])


def mixture_records(data: Path, out: Path, n: dict[str, int], seed: int) -> Path:
    from mlx_audio_stack.evaluation import rttm as ami
    from mlx_audio_stack.evaluation.count_dataset import generate_split
    from mlx_audio_stack.models.silero_vad import load_vad

    vad_dir = weights_dir() / "silero-vad"
    if not (vad_dir / "model.safetensors").exists():
        raise SystemExit(f"{vad_dir}: no Silero VAD weights (run `mas weights get silero-vad`)")
    vad = load_vad(vad_dir)
    utts = simulate.load_utterances(data, vad)
    # speakers held out of gender training are held out of the training mixtures too
    utts["train"] = [u for u in utts["train"] if speaker_split(u.speaker, seed) == "train"]
    records = []
    for split in ("train", "valid", "test"):
        noises = simulate.load_noises(
            data, split, vad, (lambda: ami.ami_silences(data)) if split == "test" else None
        )
        for rec, _, _ in generate_split(split, n[split], seed, utts[split], noises, out):
            records.append(rec)
    return write_manifest(records, out / "mixtures.jsonl")


def register(path: Path, task: str, cmd: str, out: Path) -> None:
    own = path.resolve().is_relative_to(REPO_ROOT.resolve())
    registry = DERIVED_JSON if own else out / "derived.json"
    loc = os.path.relpath(path.resolve(), REPO_ROOT) if own else str(path.resolve())
    register_derived(
        DerivedArtifact(
            f"manifest:heads-{task}",
            "manifest",
            loc,
            cmd,
            description=f"{task} labels for the Whisper heads, held-out speakers "
            "(tools/make_heads_data.py)",
        ),
        registry,
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO_ROOT / ".mas-cache" / "heads")
    ap.add_argument("--mix", default="200,50,50", help="mixtures in train,valid,test")
    ap.add_argument("--fsdd-per-speaker", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-qa", action="store_true", help="do not run the QA suite")
    a = ap.parse_args()
    data = data_dir()
    if data is None:
        raise SystemExit("shared data not found: set MAS_DATA_DIR")
    out = a.out
    out.mkdir(parents=True, exist_ok=True)
    n = dict(zip(("train", "valid", "test"), (int(x) for x in a.mix.split(","))))
    cmd = ("python tools/make_heads_data.py " + shlex.join(sys.argv[1:])).strip()
    made = {
        "gender": write_manifest(
            gender_records(data, a.fsdd_per_speaker, a.seed), out / "gender.jsonl"
        ),
        "speaking_rate": write_manifest(rate_records(data, a.seed), out / "speaking_rate.jsonl"),
        "speaker_count": mixture_records(data, out / "speaker_count", n, a.seed),
    }
    for task, path in made.items():
        register(path, task, cmd, out)
        line = f"{path}: "
        from mlx_audio_stack.data.manifest import read_manifest

        recs = read_manifest(path).records
        for split in ("train", "valid", "test"):
            rs = [r for r in recs if r["split"] == split]
            spk = {s for r in rs for s in (r.get("speakers") or [r.get("speaker")])}
            labs = Counter(r["labels"][task] for r in rs)
            line += f"{split} {len(rs)} ({len(spk)} speakers, {dict(sorted(labs.items()))}); "
        print(line)
        if not a.no_qa:
            from mlx_audio_stack.data.qa import run_qa

            r = run_qa(path, task, progress=False, plots=False)
            errs = [f.line() for f in r.findings if f.severity == "error"]
            print(f"  QA {task}: {'passed' if r.passed else 'FAILED'} {errs[:3]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
