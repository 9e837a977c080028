"""One interface over the speaker embedders: ECAPA-TDNN (SpeechBrain) and the voice encoder
(Resemblyzer's GE2E LSTM).

Every embedder has `.name`, `.sample_rate` (16000), `.dim`, `.min_samples` (shortest input it
embeds), `.threshold` (its default raw-cosine verification threshold) and
`embed(wavs, input_sr=16000) -> (N, dim)` float32 for a list of paths or float32 arrays.
ECAPA returns its raw (un-normalised) 192-d embeddings; the voice encoder unit-length 256-d
rows. Compare either with `cosine_score` (mlx_audio_stack.models.ecapa.scoring).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import WeightsError
from .weights_io import load_errors

# default weights folders under weights/, in order of preference
DEFAULTS = (
    ("ecapa-voxceleb", "mas convert <spkrec-ecapa-voxceleb folder> --out weights/ecapa-voxceleb"),
    ("voice-encoder", "mas weights get voice-encoder"),
)


def load_embedder(path: str | Path) -> Any:
    """Load a converted speaker-embedder folder, whichever model its config.json names."""
    path = Path(path)
    cfg = path / "config.json"
    if not cfg.is_file():
        raise WeightsError(
            f"{path}: not a converted weights folder (no config.json); get one with "
            f"`mas weights get voice-encoder` or `mas convert`"
        )
    with load_errors(cfg, "a speaker embedder's config"):
        model_type = json.loads(cfg.read_text()).get("model_type")
    if model_type == "ecapa":
        from .models.ecapa.load import load_model

        return load_model(path)
    if model_type == "voice_encoder":
        from .models.voice_encoder.load import load_model

        return load_model(path)
    raise WeightsError(
        f"{path}: model_type {model_type!r} is not a speaker embedder "
        f"(expected 'ecapa' or 'voice_encoder')"
    )


def default_embedder(weights_root: str | Path | None = None) -> tuple[Any, str]:
    """(embedder, its folder name): weights/ecapa-voxceleb if converted, else
    weights/voice-encoder; WeightsError saying how to get one when neither exists."""
    from .paths import weights_dir

    root = Path(weights_root) if weights_root is not None else weights_dir()
    for name, _how in DEFAULTS:
        if (root / name / "config.json").is_file():
            return load_embedder(root / name), name
    hints = "; ".join(f"{how}" for _name, how in DEFAULTS)
    raise WeightsError(
        f"no speaker-embedder weights in {root} (looked for "
        f"{', '.join(n for n, _ in DEFAULTS)}): run one of: {hints}"
    )
