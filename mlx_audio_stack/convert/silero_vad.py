"""Silero VAD converter: the `silero-vad` PyPI package's files -> MLX weights.

Sources (a file, or a folder holding one of them, e.g. the package's `data/`):
- `silero_vad.jit` (TorchScript, the reference behaviour): read without torch and without
  running its code (`load_torch_checkpoint(torchscript=True)`); both branches, 16 kHz
  `_model` and 8 kHz `_model_8k`.
- `silero_vad_16k.safetensors`: 16 kHz only (its weights differ from the JIT's).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConversionError
from . import Converted, Converter, register

JIT_NAME = "silero_vad.jit"
SAFETENSORS_NAME = "silero_vad_16k.safetensors"
# tensors that only silero's checkpoints hold, under their source names
_JIT_MARKER = "_model.decoder.rnn.weight_hh"
_SAFETENSORS_MARKERS = ("stft_conv.weight", "lstm_cell.weight_hh", "final_conv.weight")


def _find_source(src: Path) -> Path | None:
    """The file to read: `src` itself, or silero's file inside folder `src` (JIT preferred)."""
    if src.is_file():
        return src
    if src.is_dir():
        for name in (JIT_NAME, SAFETENSORS_NAME):
            if (src / name).is_file():
                from ..weights_io import inside

                return inside(src / name, src, "a symlink", ConversionError)
    return None


def _is_silero_jit(path: Path) -> bool:
    """A TorchScript zip whose pickled root is silero's `VADRNNJITMerge` (checked by name)."""
    from .torch_pickle import pickle_head

    head = pickle_head(path, 4096)
    return b"vad.model.vad_annotator" in head and b"VADRNNJITMerge" in head


def _is_silero_safetensors(path: Path) -> bool:
    if path.suffix != ".safetensors":
        return False
    try:
        from safetensors import safe_open

        with safe_open(str(path), "np") as f:
            keys = set(f.keys())
    except Exception:
        return False
    return all(m in keys for m in _SAFETENSORS_MARKERS)


def detect(src: Path) -> bool:
    """True only for silero's own JIT or 16 kHz safetensors (looks inside the file)."""
    path = _find_source(src)
    if path is None:
        return False
    return _is_silero_jit(path) or _is_silero_safetensors(path)


def _jit_tensors(obj: Any, prefix: str = "") -> dict[str, np.ndarray]:
    """Walk the inert TorchScript objects: every numpy array under its dotted attribute path."""
    out: dict[str, np.ndarray] = {}
    if isinstance(obj, np.ndarray):
        out[prefix[:-1]] = obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            out.update(_jit_tensors(v, f"{prefix}{k}."))
    elif hasattr(obj, "__dict__") and not isinstance(obj, type):
        for k, v in vars(obj).items():
            out.update(_jit_tensors(v, f"{prefix}{k}."))
    return out


def read_source(path: Path) -> tuple[dict[str, np.ndarray], list[int]]:
    """(source-named float32 tensors, sample rates present) of a silero JIT or safetensors."""
    if _is_silero_jit(path):
        from .torch_pickle import load_torch_checkpoint

        root = load_torch_checkpoint(path, torchscript=True)
        tensors = _jit_tensors(root)
        rates = [
            sr
            for sr, pre in ((16000, "_model."), (8000, "_model_8k."))
            if any(k.startswith(pre) for k in tensors)
        ]
        return tensors, rates
    if _is_silero_safetensors(path):
        from safetensors.numpy import load_file

        from ..weights_io import safetensors_header

        safetensors_header(path, ConversionError)
        return dict(load_file(str(path))), [16000]
    raise ConversionError(
        f"{path}: not a Silero VAD file (expected {JIT_NAME} or "
        f"{SAFETENSORS_NAME} from the silero-vad package)"
    )


def convert(src: Path, **_options: Any) -> Converted:
    from ..models.silero_vad.model import ModelArgs, SileroVAD
    from ..weights_io import check_weights, param_shapes

    path = _find_source(Path(src))
    if path is None:
        raise ConversionError(f"{src}: no {JIT_NAME} or {SAFETENSORS_NAME} found")
    tensors, rates = read_source(path)
    if not rates:
        raise ConversionError(f"{path}: no 16 kHz or 8 kHz branch found")
    args = ModelArgs.from_dict({"sample_rates": rates}, f"{path}: branches", ConversionError)
    model = SileroVAD(args)  # lazy: its parameters only record shapes
    expected = param_shapes(model)
    weights = model.sanitize(tensors)
    # drop the archive's non-parameter tensors (e.g. the JIT's stored `_state`)
    weights = {k: np.asarray(v, dtype=np.float32) for k, v in weights.items() if k in expected}
    check_weights(expected, weights, str(path))
    config = {
        "model_type": "silero_vad",
        "args": {"sample_rates": rates, "hidden_size": args.hidden_size},
        "source_format": "torchscript" if _is_silero_jit(path) else "safetensors",
    }
    return Converted(weights=weights, config=config, source_files=[path])


register(
    Converter(
        model_type="silero_vad",
        description="Silero VAD v5/v6 (silero_vad.jit: 16 + 8 kHz; silero_vad_16k.safetensors)",
        detect=detect,
        convert=convert,
        hub_patterns=("*.jit", "*.safetensors"),
    )
)
