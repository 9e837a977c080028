"""Load a converted MossFormer2 folder (`mas convert ... --out weights/mossformer2-ss-16k`)."""

from __future__ import annotations

from pathlib import Path

from ...errors import WeightsError
from ...weights_io import load_errors, load_model_dir, load_strict
from .model import ModelArgs, MossFormer2

MODEL_TYPE = "mossformer2"


def load_model(path: str | Path, num_spks: int | None = None) -> MossFormer2:
    """Build the model from `config.json` and load `model.safetensors` strictly (float32).

    `num_spks`, when given, must equal the checkpoint's speaker count (a 2-speaker checkpoint
    cannot separate 3 speakers): a WeightsError names both otherwise.
    """
    with load_errors(path, MODEL_TYPE):
        return _load(Path(path), num_spks)


def _load(path: Path, num_spks: int | None) -> MossFormer2:
    import mlx.core as mx

    config, weights = load_model_dir(path, MODEL_TYPE)
    args = ModelArgs.from_dict(config.get("args", {}), f"{path / 'config.json'}: args")
    if num_spks is not None and num_spks != args.num_spks:
        raise WeightsError(
            f"{path}: this checkpoint separates {args.num_spks} speakers, "
            f"but num_spks={num_spks} was asked for; use a {num_spks}-speaker "
            f"checkpoint"
        )
    model = MossFormer2(args)
    # float32 on CPU: float16 is emulated there and slower (see DESIGN.md)
    weights = {k: v.astype(mx.float32) for k, v in weights.items()}
    load_strict(model, weights, str(path))
    model.eval()
    mx.eval(model.parameters())
    return model
