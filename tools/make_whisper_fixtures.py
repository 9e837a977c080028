"""Make the Whisper parity fixtures: openai-whisper's outputs on the shared real speech,
computed once and committed, so `make test` compares our decoder against them without running
the reference (tests/test_whisper_parity.py).

For tiny.en and base (the real weights of the `weights` extra, converted in float32), with
openai-whisper (PyTorch fp32, language en, temperature 0) on openai-whisper's own log-mel:
- greedy tokens of every transcribed LibriSpeech utterance (base: every 3rd one);
- beam-5 tokens of every 10th utterance;
- word timestamps and probabilities of one long-form recording (utterances 40-42 joined);
- logits of one utterance for a fixed prompt: top-20 ids and values, log-sum-exp and mean per
  position (the tests hold ours to them at 1e-3 absolute);
- the log-mel of two files (80 and 128 bins): its mean over bins per frame and over frames per
  bin (held at 1e-4).
It records openai-whisper's and torch's versions, the converted weights' source checksums and
the audio files' sha256; the tests fail loudly when any of them differs from what is installed.
Rerun it (and commit tests/fixtures/whisper/) whenever openai-whisper's version changes:

    python tools/make_whisper_fixtures.py [--out tests/fixtures/whisper] [--threads 2]
        [--models whisper-tiny.en whisper-base]

A run of some models keeps the others of an existing fixture made with the same versions, so
the two models can be made by two processes (in turn: each writes the merged file at its end).

The reference functions here are also what the live tests (`pytest --live-refs`) call.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import numpy as np  # noqa: E402

import mlx_audio_stack  # noqa: E402,F401  (fast BLAS before MLX)

MODELS = ("whisper-tiny.en", "whisper-base")
GREEDY_STEP = {"whisper-tiny.en": 1, "whisper-base": 3}  # every utterance / every 3rd
BEAM_STEP = 10  # every 10th utterance, beam 5
BEAM_SIZE = 5
WORDS_UTTS = slice(40, 43)  # one long-form recording of three utterances
LOGIT_FILE = "librispeech/test-other/3005/163389/3005-163389-0000.flac"
LOGIT_TEXT = " The quick brown fox"
TOPK = 20
MEL_FILES = ("DEMO_CLIP", "ami_meeting_clips/trn03.wav")
MEL_BINS = (80, 128)


def greedy_utts(utts: list, name: str) -> list:
    return utts[:: GREEDY_STEP[name]]


def beam_utts(utts: list) -> list:
    return utts[::BEAM_STEP]


def mel_file(rel: str, shared: Path) -> Path:
    from mlx_audio_stack.paths import DEMO_CLIP

    return DEMO_CLIP if rel == "DEMO_CLIP" else shared / rel


def logit_prompt(tk) -> list[int]:
    """The decoder input of the logits fixture: no-timestamps SOT sequence + a fixed text."""
    return list(tk.sot_sequence_including_notimestamps) + tk.encode(LOGIT_TEXT)


# ------------------------------------------------------------------ the reference side
def reference_mel(whisper, path: Path) -> np.ndarray:
    """openai-whisper's (3000, 80) log-mel of a file's first 30 s window."""
    import torch

    from mlx_audio_stack.audio import load_audio

    a = torch.from_numpy(load_audio(path))
    return whisper.log_mel_spectrogram(a, 80, padding=480000)[:, :3000].numpy().T


def ref_decode_all(whisper, ref, mels: list[np.ndarray], **options) -> list[list[int]]:
    """openai-whisper's decode of each (3000, 80) mel (language en, fp32)."""
    import torch

    out = []
    step = 1 if options.get("beam_size") else 16  # its beam search fails on batched audio
    for i in range(0, len(mels), step):
        batch = torch.from_numpy(np.stack(mels[i : i + step]).transpose(0, 2, 1).copy())
        res = whisper.decode(
            ref, batch, whisper.DecodingOptions(language="en", fp16=False, **options)
        )
        out += [list(r.tokens) for r in res]
    return out


def words_of(result: dict) -> list[list]:
    """[word, start, end, probability] of every word of a transcribe() result."""
    return [
        [w["word"], w["start"], w["end"], float(w["probability"])]
        for s in result["segments"]
        for w in s["words"]
    ]


def ref_words(whisper, ref, audio: np.ndarray) -> list[list]:
    r = whisper.transcribe(ref, audio, fp16=False, word_timestamps=True, language="en")
    return words_of(r)


def ref_logits(whisper, ref, mel: np.ndarray, tokens: list[int]) -> np.ndarray:
    """(len(tokens), n_vocab) logits of the reference for one (3000, 80) mel."""
    import torch

    with torch.no_grad():
        x = torch.from_numpy(mel.T.copy())[None]
        return ref(x, torch.tensor([tokens]))[0].numpy()


def logit_summary(logits: np.ndarray) -> dict[str, np.ndarray]:
    """Per position: top-k ids (descending) and values, log-sum-exp and mean over the vocab."""
    x = logits.astype(np.float64)
    ids = np.argsort(-x, axis=-1, kind="stable")[:, :TOPK]
    m = x.max(-1, keepdims=True)
    return {
        "topk_ids": ids.astype(np.int32),
        "topk_values": np.take_along_axis(x, ids, -1).astype(np.float32),
        "logsumexp": (m[:, 0] + np.log(np.exp(x - m).sum(-1))).astype(np.float32),
        "mean": x.mean(-1).astype(np.float32),
    }


def mel_summary(mel_frames_by_bins: np.ndarray) -> dict[str, np.ndarray]:
    """Mean over bins of each frame and mean over frames of each bin, of a (T, n_mels) mel."""
    m = mel_frames_by_bins.astype(np.float64)
    return {"frame_mean": m.mean(1).astype(np.float32), "bin_mean": m.mean(0).astype(np.float32)}


# ------------------------------------------------------------------ fixture file
def build(
    shared: Path, weights_root: Path, models: list[str]
) -> tuple[dict, dict[str, np.ndarray]]:
    """The fixture of `models` (plus the audio checksums and log-mel summaries)."""
    import torch
    import whisper
    from _helpers import installed_version, librispeech, sha256
    from _refs import openai_whisper_from_converted

    from mlx_audio_stack.audio import load_audio
    from mlx_audio_stack.weights_get import get_weights

    utts = librispeech(shared)
    rel = {p: str(p.relative_to(shared)) for p, _ in utts}
    meta = {
        "made_by": "tools/make_whisper_fixtures.py",
        "reference": {
            "openai-whisper": installed_version("openai-whisper"),
            "torch": installed_version("torch"),
        },
        "options": {
            "language": "en",
            "fp16": False,
            "temperature": 0.0,
            "beam_size": BEAM_SIZE,
            "mel": "openai-whisper log_mel_spectrogram, first 30 s window (padding=480000)",
            "logit_text": LOGIT_TEXT,
            "topk": TOPK,
        },
        "audio": {},
        "models": {},
    }
    arrays: dict[str, np.ndarray] = {}
    for p, _ in utts:
        meta["audio"][rel[p]] = sha256(p)
    meta["audio"][LOGIT_FILE] = sha256(shared / LOGIT_FILE)

    for f in MEL_FILES:
        a = torch.from_numpy(load_audio(mel_file(f, shared)))
        if f != "DEMO_CLIP":
            meta["audio"][f] = sha256(shared / f)
        for n in MEL_BINS:
            s = mel_summary(whisper.log_mel_spectrogram(a, n).numpy().T)
            for k, v in s.items():
                arrays[f"mel/{f}/{n}/{k}"] = v

    mels = {p: reference_mel(whisper, p) for p, _ in utts}
    for name in models:
        folder = get_weights(name, weights_root / name, offline=True)
        cfg = json.loads((folder / "config.json").read_text())
        ref = openai_whisper_from_converted(folder)
        entry: dict = {"source_sha256": cfg["source_sha256"]}
        print(f"{name}: greedy", flush=True)
        g = greedy_utts(utts, name)
        toks = ref_decode_all(whisper, ref, [mels[p] for p, _ in g])
        entry["greedy"] = {rel[p]: t for (p, _), t in zip(g, toks)}
        print(f"{name}: beam {BEAM_SIZE}", flush=True)
        b = beam_utts(utts)
        toks = ref_decode_all(whisper, ref, [mels[p] for p, _ in b], beam_size=BEAM_SIZE)
        entry["beam"] = {rel[p]: t for (p, _), t in zip(b, toks)}
        print(f"{name}: word timestamps", flush=True)
        w = utts[WORDS_UTTS]
        audio = np.concatenate([load_audio(p) for p, _ in w])
        entry["words"] = {"files": [rel[p] for p, _ in w], "words": ref_words(whisper, ref, audio)}
        tokenizer = whisper.tokenizer.get_tokenizer(
            ref.is_multilingual, num_languages=ref.num_languages
        )
        prompt = logit_prompt(tokenizer)
        entry["logits"] = {"file": LOGIT_FILE, "tokens": prompt}
        lg = ref_logits(whisper, ref, reference_mel(whisper, shared / LOGIT_FILE), prompt)
        for k, v in logit_summary(lg).items():
            arrays[f"{name}/logits/{k}"] = v
        meta["models"][name] = entry
    return meta, arrays


def merge(out: Path, meta: dict, arrays: dict[str, np.ndarray]) -> None:
    """Keep the models of an existing fixture in `out` that this run did not make, when it was
    made with the same reference versions (one model per process runs them side by side)."""
    if not (out / "reference.json").exists():
        return
    old = json.loads((out / "reference.json").read_text())
    if old["reference"] != meta["reference"] or old["options"] != meta["options"]:
        return
    old_arrays = dict(np.load(out / "reference.npz"))
    for name, entry in old["models"].items():
        if name not in meta["models"]:
            meta["models"][name] = entry
            arrays.update({k: v for k, v in old_arrays.items() if k.startswith(name + "/")})
    meta["models"] = {k: meta["models"][k] for k in MODELS if k in meta["models"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(ROOT / "tests" / "fixtures" / "whisper"))
    p.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    p.add_argument("--threads", type=int, default=2, help="torch threads (1 on a busy machine)")
    a = p.parse_args(argv)
    import torch

    from mlx_audio_stack.paths import data_dir

    shared = data_dir()
    if shared is None:
        raise SystemExit("shared real-speech data not found: set MAS_DATA_DIR")
    torch.set_num_threads(a.threads)
    with tempfile.TemporaryDirectory() as tmp:
        meta, arrays = build(shared, Path(tmp), a.models)
    merge(Path(a.out), meta, arrays)
    from _helpers import write_fixture

    write_fixture(Path(a.out), meta, arrays)
    print(f"wrote {a.out} (openai-whisper {meta['reference']['openai-whisper']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
