"""Load a converted Whisper folder (`weights/<name>/`) into an MLX model, strictly."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn

from ...errors import WeightsError
from ...kernels.dispatch import kernels_on
from ...weights_io import inside, load_errors, load_model_dir, load_strict
from .model import ModelDimensions, Whisper


def default_dtype() -> mx.Dtype:
    """fp16 on a GPU (Metal/CUDA); fp32 on a CPU, where MLX emulates fp16 (7x slower here)."""
    return mx.float16 if mx.default_device() == mx.gpu else mx.float32


def build_model(
    config: dict[str, Any], dtype: mx.Dtype = mx.float32, where: str = "whisper config"
) -> Whisper:
    if config.get("model_type") != "whisper":  # before the args, which another model's fail
        raise WeightsError(
            f"{where}: holds {config.get('model_type')!r} weights, not Whisper (model_type)"
        )
    dims = ModelDimensions.from_dict(config.get("args"), f"{where}: args")
    heads = check_alignment_heads(config.get("alignment_heads", []), dims, where)
    model = Whisper(dims, dtype)
    model.alignment_heads = heads
    return model


def check_alignment_heads(
    heads: Any, dims: ModelDimensions, where: str, error: type = WeightsError
) -> list[tuple[int, int]]:
    """[[layer, head], ...] pairs inside the decoder's n_text_layer x n_text_head."""
    if not isinstance(heads, list) or len(heads) > dims.n_text_layer * dims.n_text_head:
        raise error(f"{where}: alignment_heads must be a list of [layer, head] pairs")
    out = []
    for h in heads:
        ok = isinstance(h, (list, tuple)) and len(h) == 2
        ok = ok and all(isinstance(x, int) and not isinstance(x, bool) for x in h)
        if not ok or not (0 <= h[0] < dims.n_text_layer and 0 <= h[1] < dims.n_text_head):
            raise error(
                f"{where}: alignment head {h!r} is not a [layer, head] pair inside "
                f"{dims.n_text_layer} layers x {dims.n_text_head} heads"
            )
        out.append((h[0], h[1]))
    return out


def check_dims_against(
    dims: ModelDimensions,
    weights: dict[str, Any],
    where: str,
    error: type = WeightsError,
    quantized: bool = False,
) -> None:
    """The config's sizes must be those of the stored embeddings (checked before the model is
    built, so a config cannot make it allocate more than the weights hold)."""
    expect = {
        "decoder.token_embedding.weight": (dims.n_vocab, dims.n_text_state),
        "decoder.positional_embedding": (dims.n_text_ctx, dims.n_text_state),
        "encoder.conv1.weight": (dims.n_audio_state, 3, dims.n_mels),
    }
    for k, shape in expect.items():
        if k not in weights:
            held = sorted(weights)
            raise error(
                f"{where}: weights lack {k}; they hold {len(held)} tensors: "
                f"{', '.join(held[:8])}{' ...' if len(held) > 8 else ''}"
            )
        got = tuple(weights[k].shape)
        if quantized and k == "decoder.token_embedding.weight":  # packed: rows only
            got, shape = got[:1], shape[:1]
        if got != shape:
            raise error(
                f"{where}: {k} has shape {tuple(weights[k].shape)}, the config's args say {shape}"
            )


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
    with load_errors(path, "whisper"):
        return _load(Path(path), dtype)


def _load(path: Path, dtype: mx.Dtype | str | None) -> Whisper:
    config, weights = load_model_dir(path)
    if isinstance(dtype, str):
        dtype = getattr(mx, dtype)
    dtype = dtype or default_dtype()
    where = str(path / "config.json")
    q = config.get("quantization")
    if q is not None and (not isinstance(q, dict) or q.get("bits") not in (4, 8)):
        raise WeightsError(f"{where}: quantization {q!r}: expected bits 4 or 8")
    if q and q.get("group_size") not in (32, 64, 128):
        raise WeightsError(f"{where}: quantization group_size {q.get('group_size')!r}")
    tok = config.get("tokenizer", "tokenizer.json")
    if not isinstance(tok, str) or not tok:
        raise WeightsError(f"{where}: tokenizer must be a file name, got {tok!r}")
    tokenizer_path = inside(tok, path, "config.json's tokenizer path")
    model = build_model(config, dtype, where)  # checks model_type, args and alignment heads
    dims = model.dims
    weights = model.sanitize(weights)
    check_dims_against(dims, weights, str(path), quantized=bool(q))
    if q:
        quantize_model(model, q["bits"], q["group_size"])
    weights = {
        k: v.astype(dtype) if mx.issubdtype(v.dtype, mx.floating) else v for k, v in weights.items()
    }
    load_strict(model, weights, str(path))
    model.tokenizer_path = tokenizer_path
    model.config = config
    model.name = path.name
    mx.eval(model.parameters())
    if kernels_on() and not q:
        model.decoder.prepare_cpu()
    return model


@lru_cache(maxsize=4)
def load_cached(path: str, dtype: str | None = None) -> Whisper:
    return load_model(path, dtype)
