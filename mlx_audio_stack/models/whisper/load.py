"""Load a converted Whisper folder (`weights/<name>/`) into an MLX model, strictly."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn

from ...errors import WeightsError
from ...weights_io import load_model_dir, load_strict
from .model import ModelDimensions, Whisper, sanitize


def default_dtype() -> mx.Dtype:
    """fp16 on a GPU (Metal/CUDA); fp32 on a CPU, where MLX emulates fp16 (7x slower here)."""
    return mx.float16 if mx.default_device() == mx.gpu else mx.float32


def build_model(config: dict[str, Any], dtype: mx.Dtype = mx.float32) -> Whisper:
    if config.get("model_type") != "whisper":
        raise WeightsError(f"expected model_type 'whisper', got {config.get('model_type')!r}")
    model = Whisper(ModelDimensions.from_dict(config["args"]), dtype)
    model.alignment_heads = [tuple(h) for h in config.get("alignment_heads", [])]
    return model


def _quantizable(path: str, module: nn.Module) -> bool:
    # Linear/Embedding layers whose input width splits into groups; convs stay float
    if not hasattr(module, "to_quantized"):
        return False
    return module.weight.shape[-1] % 64 == 0


def quantize_model(model: Whisper, bits: int, group_size: int) -> None:
    nn.quantize(model, group_size=group_size, bits=bits, class_predicate=_quantizable)


def load_model(path: str | Path, dtype: mx.Dtype | str | None = None) -> Whisper:
    """Load `path` (a folder written by `mas convert`) with compute dtype `dtype` (default per
    backend). The tokenizer file name is kept on `model.tokenizer_path`."""
    path = Path(path)
    config, weights = load_model_dir(path)
    if isinstance(dtype, str):
        dtype = getattr(mx, dtype)
    dtype = dtype or default_dtype()
    model = build_model(config, dtype)
    q = config.get("quantization")
    if q:
        quantize_model(model, q["bits"], q["group_size"])
    weights = sanitize(weights)
    weights = {
        k: v.astype(dtype) if mx.issubdtype(v.dtype, mx.floating) else v for k, v in weights.items()
    }
    load_strict(model, weights, str(path))
    model.tokenizer_path = path / config.get("tokenizer", "tokenizer.json")
    model.config = config
    model.name = path.name
    mx.eval(model.parameters())
    if mx.default_device() == mx.cpu and q is None:
        model.decoder.prepare_cpu()
    return model


@lru_cache(maxsize=4)
def load_cached(path: str, dtype: str | None = None) -> Whisper:
    return load_model(path, dtype)
