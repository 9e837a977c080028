"""Resemblyzer's `pretrained.pt` (GE2E voice encoder) -> MLX.

The file is a legacy (pre-1.6, non-zip) `torch.save` of {"step", "model_state",
"optimizer_state"}; it is read by the safe reader (`torch_pickle`: an allow-list of tensor and
container globals, nothing from the file is run). A folder holding `pretrained.pt` (e.g. the
installed `resemblyzer` package) works too. Hyperparameters are resemblyzer's (`hparams.py`);
the layer sizes are checked against the tensors' shapes.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConversionError
from . import Converted, Converter, register
from .torch_pickle import load_torch_checkpoint

FILE = "pretrained.pt"
# names every resemblyzer checkpoint's pickle holds (looked for in its bytes by `detect`)
SIGNATURE = (b"model_state", b"lstm.weight_hh_l0", b"linear.weight", b"similarity_weight")


def _source(src: Path) -> Path | None:
    if src.is_dir():
        return src / FILE if (src / FILE).is_file() else None
    return src if src.is_file() and src.suffix in (".pt", ".pth") else None


def _pickle_bytes(path: Path, limit: int = 1 << 16) -> bytes:
    """The start of the object's pickle (zip: its data.pkl; legacy: the file's head)."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            names = [n for n in zf.namelist() if n.endswith("data.pkl")]
            if not names:
                return b""
            with zf.open(names[0]) as f:
                return f.read(limit)
    with open(path, "rb") as f:
        return f.read(limit)


def detect(src: Path) -> bool:
    """A .pt file (or a folder with pretrained.pt) whose pickle names resemblyzer's keys."""
    path = _source(src)
    if path is None:
        return False
    try:
        head = _pickle_bytes(path)
    except (OSError, zipfile.BadZipFile):
        return False
    return all(s in head for s in SIGNATURE)


def convert_voice_encoder(src: Path, **_opts: Any) -> Converted:
    """Read the checkpoint safely, check every key and shape against the MLX model."""
    from ..models.voice_encoder.model import VoiceEncoderArgs, VoiceEncoderNet
    from ..weights_io import check_weights, param_shapes

    path = _source(Path(src))
    if path is None:
        raise ConversionError(f"{src}: expected resemblyzer's {FILE} or a folder holding it")
    ckpt = load_torch_checkpoint(path)
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model_state"), dict):
        raise ConversionError(
            f"{path}: expected a resemblyzer checkpoint dict with 'model_state', got "
            f"{type(ckpt).__name__} {sorted(ckpt) if isinstance(ckpt, dict) else ''}"
        )
    weights = {k: np.asarray(v, np.float32) for k, v in ckpt["model_state"].items()}
    w_ih0, w_hh0 = weights.get("lstm.weight_ih_l0"), weights.get("lstm.weight_hh_l0")
    lin = weights.get("linear.weight")
    if w_ih0 is None or w_hh0 is None or lin is None:
        raise ConversionError(f"{path}: model_state lacks lstm.weight_ih_l0 / linear.weight")
    layers = sum(1 for k in weights if k.startswith("lstm.weight_ih_l"))
    try:
        args = VoiceEncoderArgs(
            mel_n_channels=int(w_ih0.shape[1]),
            model_hidden_size=int(w_hh0.shape[1]),
            model_embedding_size=int(lin.shape[0]),
            model_num_layers=layers,
        )
    except ValueError as exc:
        raise ConversionError(f"{path}: {exc}") from exc
    model = VoiceEncoderNet(args)
    weights = model.sanitize(weights)
    check_weights(param_shapes(model), weights, str(path))
    config = {
        "model_type": "voice_encoder",
        "args": vars(args),
        "step": int(ckpt["step"]) if isinstance(ckpt.get("step"), int) else None,
        "reference": "resemblyzer.VoiceEncoder (resemblyzer 0.1.4, Apache-2.0)",
    }
    return Converted(weights=weights, config=config, source_files=[path])


register(
    Converter(
        model_type="voice_encoder",
        description="Resemblyzer's GE2E voice encoder (pretrained.pt, speaker embeddings)",
        detect=detect,
        convert=convert_voice_encoder,
        hub_patterns=(FILE,),
    )
)
