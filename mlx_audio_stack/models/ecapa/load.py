"""Load a converted ECAPA folder (`mas convert ... --out weights/ecapa-voxceleb`) strictly."""

from __future__ import annotations

from pathlib import Path

import mlx.core as mx

from ...errors import WeightsError
from ...weights_io import checked_args, load_errors, load_model_dir, load_strict
from .embed import EmbedConfig, SpeakerEncoder
from .fbank import FBANK_LIMITS, FbankArgs
from .model import ARG_LIMITS, ECAPA_TDNN, EcapaArgs

MODEL_TYPE = "ecapa"


def load_model(path: str | Path) -> SpeakerEncoder:
    """The ECAPA_TDNN network from `config.json` + `model.safetensors` (equal key sets and
    shapes, float32), with its front end (Fbank, mean/variance norms) as a `SpeakerEncoder`."""
    with load_errors(path, MODEL_TYPE):
        return _load(Path(path))


def _load(path: Path) -> SpeakerEncoder:
    config, weights = load_model_dir(path, MODEL_TYPE)
    where = f"{path / 'config.json'}"
    model = ECAPA_TDNN(
        checked_args(EcapaArgs, config.get("args"), f"{where}: args", limits=ARG_LIMITS)
    )
    fbank = config.get("fbank", {"n_mels": model.args.input_size})
    fb = checked_args(FbankArgs, fbank, f"{where}: fbank", limits=FBANK_LIMITS)
    emb_mean = weights.pop("emb_norm.glob_mean", None)  # the embedding norm, not the network's
    emb_std = weights.pop("emb_norm.glob_std", None)
    mx.eval([a for a in (emb_mean, emb_std) if a is not None])  # read now, not lazily
    weights = model.sanitize(weights)
    load_strict(model, {k: v.astype(mx.float32) for k, v in weights.items()}, str(path))
    model.eval()
    norm = config.get("mean_var_norm", {})
    cfg = EmbedConfig(
        sentence_norm=norm.get("enabled", True),
        sentence_std=norm.get("std_norm", False),
        emb_norm_std=config.get("emb_norm_std", False),
    )
    if fb.n_mels != model.args.input_size:
        raise WeightsError(
            f"{path}: fbank n_mels {fb.n_mels} != model input_size {model.args.input_size}"
        )
    return SpeakerEncoder(model, fb, cfg, emb_mean, emb_std)


load_ecapa = load_model  # the public name (`mlx_audio_stack.load_ecapa`)
