"""Build a SpeechBrain ECAPA-TDNN checkpoint folder with random weights, laid out exactly as
`speechbrain/spkrec-ecapa-voxceleb` (the real weights are hub-only, unreachable here):

    embedding_model.ckpt    torch.save(ECAPA_TDNN.state_dict())
    mean_var_norm_emb.ckpt  torch.save({"count", "glob_mean", "glob_std"}) of InputNormalization
    hyperparams.yaml        the real file (or a copy with smaller channels for tiny tests)

The model is SpeechBrain's own `ECAPA_TDNN` class, with non-trivial BatchNorm statistics
(random affine parameters, then a few train-mode passes over real speech features).

SpeechBrain's modules import `torchaudio` at top level but its Fbank and ECAPA_TDNN never call
it, and no CPU torchaudio wheel matches torch 2.13 on the registry. `import_speechbrain()`
therefore puts an inert stand-in module in `sys.modules["torchaudio"]` while it imports those
modules, when the real one is missing (any attribute access on it raises), and removes it
afterwards; this is for the test/benchmark harness only.

    python tools/make_ecapa_fixtures.py --out /tmp/ecapa-ckpt [--tiny] [--seed 0]
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import sys
import types
from pathlib import Path

# The real spkrec-ecapa-voxceleb hyperparams.yaml (SpeechBrain, Apache-2.0), verbatim except
# for trailing spaces; tests check it against /work/shared/reference when that is present.
HYPERPARAMS_YAML = """\
# ############################################################################
# Model: ECAPA big for Speaker verification
# ############################################################################

# Feature parameters
n_mels: 80

# Pretrain folder (HuggingFace)
pretrained_path: speechbrain/spkrec-ecapa-voxceleb

# Output parameters
out_n_neurons: 7205

# Model params
compute_features: !new:speechbrain.lobes.features.Fbank
    n_mels: !ref <n_mels>

mean_var_norm: !new:speechbrain.processing.features.InputNormalization
    norm_type: sentence
    std_norm: False

embedding_model: !new:speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN
    input_size: !ref <n_mels>
    channels: [1024, 1024, 1024, 1024, 3072]
    kernel_sizes: [5, 3, 3, 3, 1]
    dilations: [1, 2, 3, 4, 1]
    attention_channels: 128
    lin_neurons: 192

classifier: !new:speechbrain.lobes.models.ECAPA_TDNN.Classifier
    input_size: 192
    out_neurons: !ref <out_n_neurons>

mean_var_norm_emb: !new:speechbrain.processing.features.InputNormalization
    norm_type: global
    std_norm: False

modules:
    compute_features: !ref <compute_features>
    mean_var_norm: !ref <mean_var_norm>
    embedding_model: !ref <embedding_model>
    mean_var_norm_emb: !ref <mean_var_norm_emb>
    classifier: !ref <classifier>

label_encoder: !new:speechbrain.dataio.encoder.CategoricalEncoder


pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        embedding_model: !ref <embedding_model>
        mean_var_norm_emb: !ref <mean_var_norm_emb>
        classifier: !ref <classifier>
        label_encoder: !ref <label_encoder>
    paths:
        embedding_model: !ref <pretrained_path>/embedding_model.ckpt
        mean_var_norm_emb: !ref <pretrained_path>/mean_var_norm_emb.ckpt
        classifier: !ref <pretrained_path>/classifier.ckpt
        label_encoder: !ref <pretrained_path>/label_encoder.txt
"""

FULL_ARGS = dict(
    input_size=80,
    channels=[1024, 1024, 1024, 1024, 3072],
    kernel_sizes=[5, 3, 3, 3, 1],
    dilations=[1, 2, 3, 4, 1],
    attention_channels=128,
    lin_neurons=192,
)
TINY_ARGS = dict(
    input_size=80,
    channels=[32, 32, 32, 32, 96],
    kernel_sizes=[5, 3, 3, 3, 1],
    dilations=[1, 2, 3, 4, 1],
    attention_channels=16,
    lin_neurons=24,
    res2net_scale=4,
    se_channels=8,
)


def tiny_hyperparams() -> str:
    """The real hyperparams.yaml with the tiny ECAPA config (extra knobs included)."""
    a = TINY_ARGS
    block = (
        "embedding_model: !new:speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN\n"
        "    input_size: !ref <n_mels>\n"
        f"    channels: {a['channels']}\n"
        f"    kernel_sizes: {a['kernel_sizes']}\n"
        f"    dilations: {a['dilations']}\n"
        f"    attention_channels: {a['attention_channels']}\n"
        f"    res2net_scale: {a['res2net_scale']}\n"
        f"    se_channels: {a['se_channels']}\n"
        f"    lin_neurons: {a['lin_neurons']}\n"
    )
    text = re.sub(
        r"embedding_model: !new:.*?\n\n", block + "\n", HYPERPARAMS_YAML, count=1, flags=re.S
    )
    return text.replace("input_size: 192", f"input_size: {a['lin_neurons']}")


def import_speechbrain() -> types.SimpleNamespace:
    """Import SpeechBrain's ECAPA_TDNN, Fbank, InputNormalization, EER and minDCF.

    When the real torchaudio is missing, an inert stand-in sits in sys.modules only while
    these modules import, then is removed again: other code that probes for torchaudio
    (silero-vad's audio I/O, clearvoice) still finds none. Raises ImportError when
    speechbrain is not installed.
    """
    if importlib.util.find_spec("speechbrain") is None:
        raise ImportError("speechbrain is not installed (tools/install_refs.sh)")
    stub = None
    if "torchaudio" not in sys.modules and importlib.util.find_spec("torchaudio") is None:
        stub = types.ModuleType("torchaudio")
        stub.__version__ = "2.13.0+mas-stand-in"

        def _missing(name: str):
            raise AttributeError(
                f"torchaudio stand-in (test harness): no {name!r}; "
                f"this code path needs the real torchaudio"
            )

        stub.__getattr__ = _missing
        sys.modules["torchaudio"] = stub
    try:
        from speechbrain.lobes.features import Fbank
        from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN
        from speechbrain.processing.features import InputNormalization
        from speechbrain.utils.metric_stats import EER, minDCF
    finally:
        if stub is not None and sys.modules.get("torchaudio") is stub:
            del sys.modules["torchaudio"]
    return types.SimpleNamespace(
        ECAPA_TDNN=ECAPA_TDNN,
        Fbank=Fbank,
        InputNormalization=InputNormalization,
        EER=EER,
        minDCF=minDCF,
    )


def _speech(n: int, seed: int):
    """`n` waveforms (float32 numpy) of real speech when the shared data is there, else noise."""
    import numpy as np

    from mlx_audio_stack.audio import load_audio
    from mlx_audio_stack.paths import data_dir

    rng = np.random.default_rng(seed)
    d = data_dir()
    if d is None:
        return [rng.standard_normal(16000 * 2).astype(np.float32) * 0.1 for _ in range(n)]
    files = sorted((d / "librispeech_untranscribed").rglob("*.flac"))[:n]
    return [load_audio(f)[: 16000 * 4] for f in files]


def build_reference(tiny: bool = False, seed: int = 0, n_train: int = 4):
    """SpeechBrain (fbank, norm, ECAPA_TDNN in eval mode, emb_norm) with random weights."""
    import numpy as np
    import torch

    sb = import_speechbrain()
    torch.manual_seed(seed)
    args = TINY_ARGS if tiny else FULL_ARGS
    model = sb.ECAPA_TDNN(**args)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, torch.nn.BatchNorm1d):
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.normal_(0.0, 0.2)
    fbank = sb.Fbank(n_mels=80)
    norm = sb.InputNormalization(norm_type="sentence", std_norm=False)
    emb_norm = sb.InputNormalization(norm_type="global", std_norm=False)
    wavs = _speech(n_train, seed)
    model.train()
    emb_norm.train()
    with torch.no_grad():
        for w in wavs:  # non-trivial BatchNorm running statistics
            x = torch.from_numpy(np.asarray(w))[None]
            feats = norm(fbank(x), torch.ones(1))
            emb = model(torch.cat([feats, feats.flip(1)]))
            emb_norm(emb, torch.ones(2))
    model.eval()
    emb_norm.eval()
    return types.SimpleNamespace(model=model, fbank=fbank, norm=norm, emb_norm=emb_norm, args=args)


def save_folder(ref, out: str | Path, tiny: bool = False) -> Path:
    """Write the checkpoint folder in the spkrec-ecapa-voxceleb layout."""
    import torch

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(ref.model.state_dict(), out / "embedding_model.ckpt")
    ref.emb_norm._save(out / "mean_var_norm_emb.ckpt")
    (out / "hyperparams.yaml").write_text(tiny_hyperparams() if tiny else HYPERPARAMS_YAML)
    return out


def main(argv: list[str] | None = None) -> int:
    import mlx_audio_stack  # noqa: F401  (BLAS before mlx)

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--tiny", action="store_true", help="small channels (fast tests)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    out = save_folder(build_reference(a.tiny, a.seed), a.out, a.tiny)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
