"""Write the mixtures of `count_mixtures.py` as 16-bit WAV files plus a QA-able manifest.

One record per clip. The clip-level label `labels.speaker_count` is the most simultaneous
talkers in the clip (the QA suite's speaker_count taxonomy); the frame labels the model
learns are in `extra.frame_labels` (one digit per 0.1 s), so they are part of the manifest
bytes whose hash the QA gate binds.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from . import count_mixtures
from .count_mixtures import FRAME, SR

DATASET = "librispeech-speaker-count-mix"
SPLIT_CODE = {"train": 0, "valid": 1, "test": 2}


def _write_wav(path: Path, x: np.ndarray) -> None:
    import soundfile as sf

    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".wav", dir=str(path.parent))
    os.close(fd)
    try:
        sf.write(tmp, x, SR, subtype="PCM_16")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def generate_split(
    split: str,
    n: int,
    seed: int,
    utts: list[count_mixtures.Utterance],
    noises: list[tuple[str, np.ndarray]],
    out_dir: Path | None = None,
    reverb_p: float = 0.7,
    progress: bool = True,
):
    """Yield (record, audio, frame_counts) for `n` clips of `split`; with `out_dir`, also write
    `<out_dir>/<split>/<id>.wav` (the record's audio path is then relative to out_dir)."""
    from tqdm import tqdm

    if out_dir is not None:
        (out_dir / split).mkdir(parents=True, exist_ok=True)
    for i in tqdm(range(n), desc=f"mixtures {split}", disable=not progress):
        rng = np.random.default_rng([seed, SPLIT_CODE[split], i])
        audio, counts, meta = count_mixtures.make_clip(rng, utts, noises, reverb_p)
        audio = count_mixtures.quantize16(audio)
        cid = f"{split}-{i:05d}"
        rel = f"{split}/{cid}.wav"
        if out_dir is not None:
            _write_wav(out_dir / rel, audio)
        rec = {
            "id": cid,
            "audio": rel,
            "duration": audio.size / SR,
            "sample_rate": SR,
            "channels": 1,
            "num_samples": int(audio.size),
            "speakers": [f"librispeech:{s}" for s in meta["speakers"]],
            "overlap": round(float(np.sum(counts >= 2)) * FRAME / SR, 2),
            "labels": {"speaker_count": str(int(counts.max()) if counts.size else 0)},
            "split": split,
            "dataset": DATASET,
            "license": "CC-BY-4.0",
            "extra": {
                "frame_seconds": FRAME / SR,
                "frame_labels": "".join(str(int(c)) for c in counts),
                "label_rule": "Silero VAD on each clean source; >= half a frame active",
                **meta,
            },
        }
        yield rec, audio, counts
