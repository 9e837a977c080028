"""Load a converted voice-encoder folder (`mas weights get voice-encoder`) strictly."""

from __future__ import annotations

from pathlib import Path

import mlx.core as mx

from ...errors import WeightsError
from ...weights_io import load_errors, load_model_dir, load_strict
from .embed import VoiceEncoder
from .model import VoiceEncoderArgs, VoiceEncoderNet

MODEL_TYPE = "voice_encoder"


def load_model(path: str | Path) -> VoiceEncoder:
    """The network from `config.json` + `model.safetensors` (equal key sets and shapes,
    float32), with its mel front end as a `VoiceEncoder`."""
    with load_errors(path, MODEL_TYPE):
        return _load(Path(path))


def _load(path: Path) -> VoiceEncoder:
    config, weights = load_model_dir(path, MODEL_TYPE)
    try:
        args = VoiceEncoderArgs(**config["args"])
    except (KeyError, TypeError, ValueError) as exc:
        raise WeightsError(f"{path}: config.json args: {exc}") from exc
    model = VoiceEncoderNet(args)
    weights = model.sanitize(weights)
    load_strict(model, {k: v.astype(mx.float32) for k, v in weights.items()}, str(path))
    model.eval()
    return VoiceEncoder(model)


load_voice_encoder = load_model  # the public name (`mlx_audio_stack.load_voice_encoder`)
