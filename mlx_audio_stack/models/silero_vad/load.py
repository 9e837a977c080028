"""Load converted Silero VAD weights (`mas convert` / `mas weights get silero-vad`)."""

from __future__ import annotations

from pathlib import Path

import mlx.core as mx

from ...weights_io import load_errors, load_model_dir, load_strict
from .model import ModelArgs, SileroVAD


def model_from_weights(weights: dict, args: ModelArgs, where: str = "weights") -> SileroVAD:
    """A ready (eval-mode, float32) model from name -> array weights (source or our names)."""
    model = SileroVAD(args)
    weights = model.sanitize(dict(weights))
    weights = {k: mx.array(v).astype(mx.float32) for k, v in weights.items()}
    load_strict(model, weights, where)
    model.eval()
    mx.eval(model.parameters())
    for sr in args.sample_rates:
        model.branch(sr).prepare()
    return model


def load_model(path: str | Path) -> SileroVAD:
    """Load a converted weights folder (model.safetensors + config.json) as a `SileroVAD`.

    Computation is float32 whatever dtype the weights were stored in (the model is tiny).
    """
    with load_errors(path, "silero_vad"):
        config, weights = load_model_dir(path, "silero_vad")
        args = ModelArgs.from_dict(config.get("args", {}), f"{Path(path) / 'config.json'}: args")
        return model_from_weights(weights, args, str(path))


load_vad = load_model  # the public name (`mlx_audio_stack.load_vad`)
