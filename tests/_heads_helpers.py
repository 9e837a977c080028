"""Helpers for the heads tests (no tests here): a tiny random Whisper weights folder and a
small labelled manifest of generated audio whose labels the audio really carries."""

from __future__ import annotations

from pathlib import Path

import mlx.core as mx
import numpy as np
import soundfile as sf
from mlx.utils import tree_flatten

from mlx_audio_stack.data.manifest import write_manifest
from mlx_audio_stack.models.whisper import ModelDimensions, Whisper
from mlx_audio_stack.weights_io import save_model_dir

SR = 16000
# QA profile for the tests' small manifests (a few records per class)
SMALL_QA = {"min_class_count": 3, "min_overlap_records": 3}
TINY_DIMS = ModelDimensions(80, 1500, 32, 2, 3, 100, 16, 32, 2, 1)


def tiny_whisper_dir(path: Path, seed: int = 0) -> Path:
    """A converted-weights folder of a random 3-layer, 32-wide Whisper."""
    mx.random.seed(seed)
    m = Whisper(TINY_DIMS)
    weights = dict(tree_flatten(m.parameters()))
    tok = path.parent / "tokenizer.json"
    tok.write_text("{}")
    config = {"model_type": "whisper", "args": TINY_DIMS.to_dict(), "tokenizer": "tokenizer.json"}
    return save_model_dir(path, weights, config, extra_files={"tokenizer.json": tok})


def _clip(rng, low: bool, n_voices: int, seconds: float) -> np.ndarray:
    """Harmonic tones: pitch band encodes 'gender', the number of simultaneous tones the
    speaker count (a tiny random encoder can still separate these)."""
    t = np.arange(int(seconds * SR)) / SR
    x = np.zeros_like(t)
    for _ in range(n_voices):
        f0 = rng.uniform(100, 140) if low else rng.uniform(300, 400)
        x += sum(np.sin(2 * np.pi * f0 * k * t) / k for k in (1, 2, 3))
    x += 0.05 * rng.standard_normal(t.size)
    return (0.3 * x / max(1e-6, np.abs(x).max())).astype(np.float32)


def heads_manifest(tmp: Path, n_speakers: int = 12, per_speaker: int = 4, seed: int = 0) -> Path:
    """Speaker-disjoint splits; labels gender (pitch band), speaker_count (1-3 tones, equal
    shares), frame labels for speaker_count; clips 0.6-1.4 s."""
    rng = np.random.default_rng(seed)
    recs = []
    for s in range(n_speakers):
        split = "test" if s >= n_speakers - 2 else "valid" if s >= n_speakers - 4 else "train"
        low = s % 2 == 0
        for i in range(per_speaker):
            k = 1 + (s + i) % 3
            dur = float(np.round(rng.uniform(0.6, 1.4), 2))
            wav = tmp / "audio" / f"s{s}_{i}.wav"
            wav.parent.mkdir(parents=True, exist_ok=True)
            x = _clip(rng, low, k, dur)
            sf.write(str(wav), x, SR)
            n_frames = int(np.ceil(x.size / 1600))
            recs.append(
                {
                    "id": f"s{s}_{i}",
                    "audio": str(wav),
                    "duration": x.size / SR,
                    "sample_rate": SR,
                    "channels": 1,
                    "num_samples": int(x.size),
                    "speaker": f"spk{s}",
                    "speakers": [f"spk{s}"] + [f"spk{s}-{j}" for j in range(1, k)],
                    "overlap": 0.0 if k == 1 else round(x.size / SR, 2),
                    "labels": {"gender": "male" if low else "female", "speaker_count": str(k)},
                    "split": split,
                    "dataset": "synthetic",
                    "license": "CC0-1.0",
                    "extra": {"frame_seconds": 0.1, "frame_labels": str(k) * n_frames},
                }
            )
    return write_manifest(recs, tmp / "heads.jsonl")


def pass_qa(manifest: Path, tasks) -> None:
    """Run the QA suite on `manifest` for each task (small-manifest profile); it must pass."""
    from mlx_audio_stack.data import run_qa

    for t in tasks:
        r = run_qa(manifest, t, progress=False, profile_overrides=SMALL_QA, plots=False)
        assert r.passed, [f.line() for f in r.findings if f.severity == "error"][:5]
