"""Load / save the speaker counter (model.safetensors + config.json, loaded strictly)."""

from __future__ import annotations

from pathlib import Path

import mlx.core as mx
from mlx.utils import tree_flatten

from ...paths import ASSETS_DIR
from ...weights_io import load_model_dir, load_strict, save_model_dir
from .detector import SpeakerCountDetector
from .model import ModelArgs, SpeakerCounter

MODEL_TYPE = "speaker_count"
SHIPPED_DIR = ASSETS_DIR / "speaker_count"  # trained by tools/train_speaker_count.py


def model_from_weights(weights: dict, args: ModelArgs, where: str = "weights") -> SpeakerCounter:
    """An eval-mode float32 model from name -> array weights (stored dtype may be float16)."""
    model = SpeakerCounter(args)
    weights = model.sanitize(weights)
    load_strict(model, {k: mx.array(v).astype(mx.float32) for k, v in weights.items()}, where)
    model.eval()
    mx.eval(model.parameters())
    return model


def load_model(path: str | Path | None = None) -> SpeakerCountDetector:
    """The speaker-count / overlap detector. `path`: a folder with model.safetensors +
    config.json; None = the weights shipped in the package (assets/speaker_count)."""
    path = Path(path) if path is not None else SHIPPED_DIR
    config, weights = load_model_dir(path, MODEL_TYPE)
    args = ModelArgs.from_dict(config.get("args", {}))
    return SpeakerCountDetector(model_from_weights(weights, args, str(path)), config)


def save_speaker_counter(
    model: SpeakerCounter, out: str | Path, extra_config: dict | None = None, dtype=mx.float16
) -> Path:
    """Write `model` as a weights folder (float16 on disk by default: half the size)."""
    weights = {k: v.astype(dtype) for k, v in tree_flatten(model.parameters())}
    config = {
        "model_type": MODEL_TYPE,
        "args": model.args.to_dict(),
        "dtype": str(dtype).removeprefix("mlx.core."),
        **(extra_config or {}),
    }
    return save_model_dir(out, weights, config, overwrite=True)


load_speaker_counter = load_model  # the public name (`mlx_audio_stack.load_speaker_counter`)
