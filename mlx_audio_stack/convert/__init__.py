"""The one conversion tool: a registry of model types, source detection, atomic output.

Each model registers a `Converter` from its own module in this package (auto-discovered:
every module here except `torch_pickle` and names starting with `_`). `convert()` resolves the
source (local path, or a Hugging Face repo id when the hub is reachable), picks the converter
(auto-detected, or forced with `model=`), casts/quantizes, and writes
`<out>/model.safetensors` + `config.json` through a temporary folder.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import remove_stale
from ..errors import ConversionError, MasError
from ..weights_io import save_model_dir

DTYPES = ("float32", "float16", "bfloat16")


@dataclass
class Converted:
    """What a converter returns: float weights (name -> numpy/mx array), the config, extra files."""

    weights: dict[str, Any]
    config: dict[str, Any]  # must hold "model_type" and "args"
    extra_files: dict[str, Path] = field(default_factory=dict)
    source_files: list[Path] = field(default_factory=list)  # hashed into config["source_sha256"]


@dataclass
class Converter:
    model_type: str
    description: str
    detect: Callable[[Path], bool]  # does this local source look like ours?
    convert: Callable[..., Converted]  # (src: Path, **options) -> Converted
    hub_patterns: tuple[str, ...] = (
        "*.json",
        "*.safetensors",
        "*.bin",
        "*.pt",
        "*.ckpt",
        "*.yaml",
        "*.txt",
        "*.model",
    )
    quantize: Callable[[Converted, int, int], Converted] | None = None
    # weights whose dtype must stay float32 whatever --dtype says (e.g. running statistics)
    keep_float32: Callable[[str], bool] = lambda name: False


REGISTRY: dict[str, Converter] = {}
_discovered = False


def register(conv: Converter) -> Converter:
    REGISTRY[conv.model_type] = conv
    return conv


def _discover() -> None:
    global _discovered
    if _discovered:
        return
    _discovered = True
    for mod in pkgutil.iter_modules(__path__):
        if not mod.name.startswith("_") and mod.name != "torch_pickle":
            importlib.import_module(f"{__name__}.{mod.name}")


def model_types() -> list[str]:
    _discover()
    return sorted(REGISTRY)


def resolve_source(src: str | Path, patterns: tuple[str, ...] | None = None) -> Path:
    """A local file/folder as is; else a Hugging Face repo id, downloaded when reachable."""
    p = Path(src).expanduser()
    if p.exists():
        return p
    s = str(src)
    if s.count("/") != 1 or s.startswith((".", "/", "~")):
        raise ConversionError(f"{src}: no such file or folder (and not a hub repo id 'org/name')")
    try:
        from huggingface_hub import snapshot_download
    except ImportError as exc:  # pragma: no cover - core dependency
        raise ConversionError("huggingface-hub is not installed") from exc
    try:
        return Path(snapshot_download(s, allow_patterns=list(patterns) if patterns else None))
    except Exception as exc:
        raise ConversionError(
            f"{src}: not a local path, and the Hugging Face hub could not provide it "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'offline?'}). "
            f"Download it on a connected machine and pass the local folder."
        ) from exc


def _detects(conv: Converter, src: Path) -> bool:
    try:
        return bool(conv.detect(src))
    except MasError:
        raise
    except Exception:  # a detector peeking into a malformed file: not this model
        return False


def detect(src: Path) -> Converter:
    _discover()
    hits = [c for c in REGISTRY.values() if _detects(c, src)]
    if len(hits) == 1:
        return hits[0]
    if not hits:
        raise ConversionError(
            f"{src}: cannot tell which model this is; pass --model one of {model_types()}"
        )
    raise ConversionError(
        f"{src}: looks like several model types ({[c.model_type for c in hits]}); pass --model"
    )


def cast_weights(weights: dict[str, Any], dtype: str, keep_float32=lambda n: False) -> dict:
    """Cast floating weights to `dtype` (integers and `keep_float32` names untouched)."""
    import mlx.core as mx

    if dtype not in DTYPES:
        raise ConversionError(f"dtype: expected one of {DTYPES}, got {dtype!r}")
    target = getattr(mx, dtype)
    out = {}
    for k, v in weights.items():
        a = v if isinstance(v, mx.array) else mx.array(np.asarray(v))
        if mx.issubdtype(a.dtype, mx.floating):
            a = a.astype(mx.float32 if keep_float32(k) else target)
        out[k] = a
    return out


def convert(
    src: str | Path,
    out: str | Path,
    model: str | None = None,
    dtype: str = "float32",
    quantize: int | None = None,
    group_size: int = 64,
    force: bool = False,
    **options: Any,
) -> Path:
    """Convert a checkpoint (path or hub repo id) to an MLX weights folder at `out`.

    Returns the output folder. `model` forces the model type (see `model_types()`).
    """
    from ..weights_io import sha256_file

    _discover()
    out = Path(out)
    remove_stale(out)  # temps of killed runs; an old folder whose replacement was killed
    if out.exists() and not force:
        raise ConversionError(f"{out}: already exists (use --force to overwrite)")
    if model is not None and model not in REGISTRY:
        raise ConversionError(f"--model {model!r}: unknown; choose one of {model_types()}")
    patterns = REGISTRY[model].hub_patterns if model else None
    path = resolve_source(src, patterns)
    conv = REGISTRY[model] if model else detect(path)
    try:
        result = conv.convert(path, **options)
    except MasError:
        raise
    except Exception as exc:  # a malformed source must end in one line, never a traceback
        msg = str(exc).splitlines()[0][:200] if str(exc) else ""
        raise ConversionError(
            f"{path}: cannot convert as {conv.model_type}: malformed source "
            f"({type(exc).__name__}: {msg})"
        ) from exc
    if quantize is not None:
        if conv.quantize is None:
            raise ConversionError(f"--quantize is not supported for {conv.model_type}")
        if quantize not in (4, 8):
            raise ConversionError(f"--quantize: expected 4 or 8 bits, got {quantize}")
    weights = cast_weights(result.weights, dtype, conv.keep_float32)
    result.weights = weights
    config = dict(result.config)
    config.setdefault("model_type", conv.model_type)
    config["dtype"] = dtype
    config["source"] = str(src)
    config["source_sha256"] = {p.name: sha256_file(p) for p in result.source_files}
    result.config = config
    if quantize is not None:
        result = conv.quantize(result, quantize, group_size)
    return save_model_dir(out, result.weights, result.config, result.extra_files, overwrite=force)
