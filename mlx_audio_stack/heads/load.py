"""Save / load the Whisper heads: model.safetensors + config.json, loaded strictly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlx.core as mx
from mlx.utils import tree_flatten

from ..errors import WeightsError
from ..weights_io import load_errors, load_model_dir, load_strict, save_model_dir
from .model import MODEL_TYPE, HeadsArgs, WhisperHeads


def save_heads(
    model: WhisperHeads,
    out: str | Path,
    extra_config: dict[str, Any] | None = None,
    dtype: mx.Dtype = mx.float32,
    extra_files: dict[str, str | Path] | None = None,
) -> Path:
    """Write `model` as a weights folder (atomically; an existing folder is replaced).
    `extra_config` (the encoder it was trained on, the QA verdict, training settings) is
    stored in config.json beside model_type and args; `extra_files` (name -> path: the
    training report, plots) are copied in."""
    weights = {k: v.astype(dtype) for k, v in tree_flatten(model.parameters())}
    config = {
        "model_type": MODEL_TYPE,
        "args": model.args.to_dict(),
        "dtype": str(dtype).removeprefix("mlx.core."),
        **(extra_config or {}),
    }
    return save_model_dir(out, weights, config, extra_files, overwrite=True)


def load_heads(path: str | Path) -> WhisperHeads:
    """The heads in folder `path` (float32, eval mode); `.config` holds its config.json."""
    with load_errors(path, "whisper heads"):
        config, weights = load_model_dir(path)
        where = str(Path(path) / "config.json")
        if config.get("model_type") != MODEL_TYPE:
            raise WeightsError(
                f"{where}: model_type is {config.get('model_type')!r}, expected {MODEL_TYPE!r}"
            )
        model = WhisperHeads(HeadsArgs.from_dict(config.get("args"), where))
        load_strict(model, {k: mx.array(v).astype(mx.float32) for k, v in weights.items()}, where)
        model.eval()
        mx.eval(model.parameters())
        model.config = config
        return model
