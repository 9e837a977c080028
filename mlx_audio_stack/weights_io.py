"""Converted-weights folders: `model.safetensors` + `config.json`, written atomically, loaded
strictly (equal key sets and shapes, every difference named)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .errors import WeightsError

CONVERTER_VERSION = "1"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def save_model_dir(
    out: str | Path,
    weights: Mapping[str, Any],
    config: dict[str, Any],
    extra_files: Mapping[str, str | Path] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write `weights` (name -> mx.array) and `config` into `out`, atomically.

    Everything goes to a temporary sibling folder first, then one rename puts it in place:
    an interrupted conversion leaves no half-written `out`. `extra_files` (name -> source path)
    are copied in too (tokenizer files...).
    """
    import mlx.core as mx

    out = Path(out)
    if out.exists() and not overwrite:
        raise WeightsError(f"{out}: already exists (pass overwrite=True / --force to replace it)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; a weights folder is ordinary data
    try:
        arrays = {k: v if isinstance(v, mx.array) else mx.array(v) for k, v in weights.items()}
        mx.save_safetensors(str(tmp / WEIGHTS_FILE), arrays, metadata={"format": "mlx"})
        config = {**config, "converter_version": CONVERTER_VERSION}
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=False) + "\n")
        for name, src in (extra_files or {}).items():
            shutil.copyfile(src, tmp / name)
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def load_model_dir(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return (config, weights) of a converted folder; clear errors when it is not one."""
    import mlx.core as mx

    path = Path(path)
    cfg_path, w_path = path / CONFIG_FILE, path / WEIGHTS_FILE
    if not path.is_dir():
        raise WeightsError(
            f"{path}: not a converted weights folder (run `mas convert` or `mas weights get` first)"
        )
    for p in (cfg_path, w_path):
        if not p.exists():
            raise WeightsError(f"{path}: missing {p.name}; convert the model again")
    try:
        config = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as exc:
        raise WeightsError(f"{cfg_path}: invalid JSON ({exc})") from exc
    weights = mx.load(str(w_path))
    return config, weights


def check_weights(
    expected: Mapping[str, tuple[int, ...]], got: Mapping[str, Any], where: str
) -> None:
    """Raise WeightsError listing missing keys, unexpected keys and shape mismatches."""
    missing = sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected))
    shapes = [
        f"{k}: expected {tuple(expected[k])}, got {tuple(got[k].shape)}"
        for k in sorted(set(expected) & set(got))
        if tuple(expected[k]) != tuple(got[k].shape)
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(
                f"missing {len(missing)} keys: {', '.join(missing[:20])}"
                + (" ..." if len(missing) > 20 else "")
            )
        if unexpected:
            parts.append(
                f"unexpected {len(unexpected)} keys: {', '.join(unexpected[:20])}"
                + (" ..." if len(unexpected) > 20 else "")
            )
        if shapes:
            parts.append("shape mismatches: " + "; ".join(shapes[:20]))
        raise WeightsError(f"{where}: weights do not match the model: " + " | ".join(parts))


def load_strict(module, weights: Mapping[str, Any], where: str) -> None:
    """Load `weights` into an mlx.nn.Module after checking key sets and shapes exactly."""
    from mlx.utils import tree_flatten

    expected = {k: tuple(v.shape) for k, v in tree_flatten(module.parameters())}
    check_weights(expected, weights, where)
    module.load_weights(list(weights.items()), strict=True)


def to_numpy_f32(x) -> np.ndarray:
    """Any array-like (numpy, incl. float16/bfloat16 raw) -> float32 numpy."""
    return np.asarray(x, dtype=np.float32)
