"""Make the voice-encoder parity fixture: resemblyzer's `VoiceEncoder.embed_utterance` on
real LibriSpeech speech, computed once and committed, so tests/test_voice_encoder_parity.py
compares our encoder against it when resemblyzer (or torch) is not installed.

For the utterances of `utterances()` (every 8th test-other file, cut to LENGTHS: shorter than
one partial, around the partial length, several partials, whole files): the (256,) embedding
of each and, for the 7 s one, its per-partial embeddings. It records resemblyzer's and torch's
versions, the checkpoint's sha256 (our converted weights must come from the same file) and the
audio's sha256. Rerun it (and commit tests/fixtures/voice_encoder/) when resemblyzer changes:

    python tools/make_voice_encoder_fixtures.py [--out tests/fixtures/voice_encoder]
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import numpy as np  # noqa: E402

import mlx_audio_stack  # noqa: E402,F401  (fast BLAS before MLX)

# seconds; 0.3 .. 1.59 are shorter than one partial, None is the whole file
LENGTHS = [0.3, 0.8, 1.2, 1.59, 1.6, 1.9, 2.2, 3.0, 4.5, 7.0, None, None]
PARTIALS_OF = 9  # the 7 s utterance: 8 partials


def utterance_files(shared: Path) -> list[Path]:
    files = sorted((shared / "librispeech" / "test-other").rglob("*.flac"))[::8]
    return files[: len(LENGTHS)]


def utterances(shared: Path) -> list[np.ndarray]:
    """The test utterances: 16 kHz float32, each file cut to its LENGTHS entry."""
    from mlx_audio_stack.audio import load_audio

    out = []
    for f, sec in zip(utterance_files(shared), LENGTHS):
        w = load_audio(f)
        out.append(w if sec is None else w[: int(sec * 16000)])
    return out


def checkpoint() -> Path:
    return Path(__import__("resemblyzer").__file__).parent / "pretrained.pt"


def build(shared: Path) -> tuple[dict, dict[str, np.ndarray]]:
    import torch
    from _helpers import installed_version, sha256
    from resemblyzer.voice_encoder import VoiceEncoder

    torch.set_num_threads(2)
    model = VoiceEncoder("cpu", verbose=False)
    utts = utterances(shared)
    meta = {
        "made_by": "tools/make_voice_encoder_fixtures.py",
        "reference": {
            "resemblyzer": installed_version("resemblyzer"),
            "torch": installed_version("torch"),
        },
        "source_sha256": {"pretrained.pt": sha256(checkpoint())},
        "audio": {str(f.relative_to(shared)): sha256(f) for f in utterance_files(shared)},
        "lengths": LENGTHS,
    }
    arrays = {"embeddings": np.stack([model.embed_utterance(w) for w in utts])}
    _, partials, _ = model.embed_utterance(utts[PARTIALS_OF], return_partials=True)
    arrays["partials"] = np.asarray(partials, np.float32)
    return meta, arrays


def main(argv: list[str] | None = None) -> int:
    from _helpers import fixture_main

    return fixture_main(argv, __doc__, "voice_encoder", build)


if __name__ == "__main__":
    sys.exit(main())
