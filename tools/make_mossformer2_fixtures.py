"""Make the MossFormer2 parity fixture: ClearerVoice's PyTorch model's separated waveforms of
one real LibriSpeech mixture, computed once and committed, so tests/test_mossformer2_parity.py
compares our model against them when ClearerVoice (or torch) is not installed.

The model is ClearerVoice's own `MossFormer2_SS_16K(...).model` at a small size (DIMS, 2
speakers). Its parameters are not torch's random init but `random_state()` below: numpy
draws from a fixed seed, in the parameter order and (torch) shapes the fixture records. The
test rebuilds the same weights from that list without torch, so the fixture holds no
weights: only the 0.5 s mixture (from `evaluation.separation.make_mixtures`, seed 0) and the
reference's output. It records clearvoice's and torch's versions. Rerun it (and commit
tests/fixtures/mossformer2/) when clearvoice's version changes:

    python tools/make_mossformer2_fixtures.py [--out tests/fixtures/mossformer2]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import numpy as np  # noqa: E402

import mlx_audio_stack  # noqa: E402,F401  (fast BLAS before MLX)

DIMS = {"encoder_embedding_dim": 32, "mossformer_sequence_dim": 32, "num_mossformer_layer": 1}
NUM_SPKS = 2
SEED = 0
SECONDS = 0.5
NORM_SUFFIXES = ("weight", ".g", ".scale", "gamma")  # 1-D ones are scales: drawn around 1


def random_state(params: list[list], seed: int = SEED) -> dict[str, np.ndarray]:
    """name -> float32 array in torch layout for `params` ([name, shape] pairs, in order):
    N(0, 1/fan_in) for matrices and kernels, 1 + N(0, 0.1^2) for 1-D scales, N(0, 0.1^2) for
    1-D shifts. Torch-free, so the test rebuilds the reference's exact weights."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in params:
        z = rng.standard_normal(shape).astype(np.float32)
        if len(shape) >= 2:
            z /= np.float32(np.sqrt(np.prod(shape[1:])))
        elif name.endswith(NORM_SUFFIXES):
            z = np.float32(1.0) + np.float32(0.1) * z
        else:
            z *= np.float32(0.1)
        out[name] = z
    return out


def reference_model():
    """ClearerVoice's MossFormer (the `.model` of MossFormer2_SS_16K) at DIMS, NUM_SPKS."""
    import clearvoice
    import yaml
    from clearvoice.models.mossformer2_ss.mossformer2 import MossFormer2_SS_16K

    cfg_path = Path(clearvoice.__file__).parent / "config/inference/MossFormer2_SS_16K.yaml"
    cfg = yaml.safe_load(cfg_path.read_text())  # the bundled config, sizes overridden
    cfg.update(DIMS, num_spks=NUM_SPKS)
    return MossFormer2_SS_16K(type("Args", (), cfg)).model.eval()


def mixture(shared: Path) -> np.ndarray:
    from mlx_audio_stack.evaluation.separation import load_mixture, make_mixtures

    with tempfile.TemporaryDirectory() as tmp:
        make_mixtures(shared, Path(tmp), 1, NUM_SPKS, seconds=SECONDS, overlap=1.0, seed=0)
        return load_mixture(Path(tmp) / "mix0000")[0].astype(np.float32)


def build(shared: Path) -> tuple[dict, dict[str, np.ndarray]]:
    import torch
    from _helpers import installed_version

    torch.set_num_threads(2)
    model = reference_model()
    params = [[k, list(p.shape)] for k, p in model.named_parameters()]
    state = random_state(params)
    with torch.no_grad():
        for k, p in model.named_parameters():
            p.copy_(torch.from_numpy(state[k]))
        mix = mixture(shared)
        outs = model(torch.from_numpy(mix[None]))
    meta = {
        "made_by": "tools/make_mossformer2_fixtures.py",
        "reference": {
            "clearvoice": installed_version("clearvoice"),
            "torch": installed_version("torch"),
        },
        "dims": DIMS,
        "num_spks": NUM_SPKS,
        "seed": SEED,
        "params": params,
    }
    arrays = {"mixture": mix, "reference": np.stack([o[0].numpy() for o in outs])}  # (S, T)
    return meta, arrays


def main(argv: list[str] | None = None) -> int:
    from _helpers import fixture_main

    return fixture_main(argv, __doc__, "mossformer2", build)


if __name__ == "__main__":
    sys.exit(main())
