"""MossFormer2 speech separation (ClearerVoice-Studio `MossFormer2_SS_16K` and its 8 kHz /
3-speaker / WHAMR! variants) -> MLX.

Accepted sources:
- a ClearerVoice checkpoint folder: a text file `last_best_checkpoint` whose first line names
  the checkpoint file beside it, holding `{"model": state_dict}` (keys may carry `module.`);
  optionally a ClearerVoice inference `*.yaml` (its `num_spks`, `sampling_rate`,
  `encoder_*` fields are read);
- a bare torch checkpoint file (`.pt`/`.pth`/`.ckpt`/`.bin`), the state dict at its top level or
  under "model";
- the MLX safetensors layout of starkdmi/mossformer_ss_mlx (`model_fp32.safetensors`, keys
  `model.mask_net...conv_module.weight`, `...convs.0.weight`), a file or a folder/hub repo.

Everything not stored in the weights (sample rate, the WHAMR! "no mask multiplication"
switch) comes from the yaml, else from the source's name (`8K`, `WHAMR`), else the
16 kHz defaults; the `sampling_rate=` / `whamr=` options override them.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConversionError
from ..weights_io import check_weights, inside, load_safetensors, param_shapes
from . import Converted, Converter, register
from .torch_pickle import MAX_PICKLE_BYTES, flatten_state_dict, load_torch_checkpoint, pickle_head

MODEL_TYPE = "mossformer2"
BEST = "last_best_checkpoint"
TORCH_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")
MAX_YAML_BYTES = 1 << 20
# keys every MossFormer2 separation state dict has (after prefixes are stripped)
SIGNATURE = (
    "enc.conv1d.weight",
    "dec.weight",
    "mask_net.conv1d_out.weight",
    "mask_net.mdl.intra_mdl.mossformerM.layers.0.qk_offset_scale.gamma",
)


def _strip(key: str) -> str:
    for p in ("module.", "model."):
        if key.startswith(p):
            key = key[len(p) :]
    return key


def _looks_like_ours(keys) -> bool:
    stripped = {_strip(k) for k in keys}
    return all(s in stripped for s in SIGNATURE)


def _safetensors_keys(path: Path) -> list[str]:
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            return []
        (n,) = struct.unpack("<Q", head)
        if n > 100_000_000:
            return []
        meta = json.loads(f.read(n))
    return [k for k in meta if k != "__metadata__"]


def _checkpoint_of(src: Path) -> Path | None:
    """The checkpoint file a ClearerVoice folder's `last_best_checkpoint` names."""
    best = src / BEST
    if not best.is_file():
        return None
    with open(best, "rb") as f:  # one file name on its first line
        lines = f.read(4096).decode("utf-8", errors="replace").strip().splitlines()
    if not lines:
        raise ConversionError(f"{best}: empty; expected the checkpoint file name on line 1")
    ckpt = src / lines[0].strip()
    if not ckpt.is_file():
        raise ConversionError(f"{best}: names {lines[0].strip()!r}, which is not in {src}")
    return inside(ckpt, src, f"the checkpoint {best.name} names", ConversionError)


def _source_file(src: Path) -> tuple[Path, str] | None:
    """(file, kind) with kind 'torch' or 'safetensors', or None when not a candidate."""
    if src.is_file():
        if src.suffix == ".safetensors":
            return src, "safetensors"
        if src.suffix in TORCH_SUFFIXES or src.name == BEST:
            return (_checkpoint_of(src.parent), "torch") if src.name == BEST else (src, "torch")
        return None
    if not src.is_dir():
        return None
    if (src / BEST).is_file():
        return _checkpoint_of(src), "torch"
    st = sorted(src.glob("*.safetensors"))
    if (src / "config.json").is_file() and (src / "model.safetensors").is_file():
        try:  # our own converted folder is an output, not a source
            if json.loads((src / "config.json").read_text()).get("model_type") == MODEL_TYPE:
                return None
        except (OSError, json.JSONDecodeError):
            pass
    if st:
        fp32 = [p for p in st if "fp32" in p.name]
        return (fp32 or st)[0], "safetensors"
    pts = [p for p in sorted(src.iterdir()) if p.suffix in TORCH_SUFFIXES]
    return (pts[0], "torch") if len(pts) == 1 else None


def _torch_state_dict(path: Path) -> dict[str, np.ndarray]:
    obj = load_torch_checkpoint(path)
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    if not isinstance(obj, dict):
        raise ConversionError(
            f"{path}: expected a state dict (or {{'model': state_dict}}), got {type(obj).__name__}"
        )
    flat = flatten_state_dict(obj)
    return {k: v for k, v in flat.items() if isinstance(v, np.ndarray)}


def _pickle_mentions_signature(path: Path) -> bool:
    """Cheap check of a torch zip checkpoint: its data.pkl (keys and structure only, no
    tensor data) must name every SIGNATURE key; avoids reading a GB-sized foreign file."""
    raw = pickle_head(path, MAX_PICKLE_BYTES)
    return all(k.encode() in raw for k in SIGNATURE)


def detect(src: Path) -> bool:
    try:
        found = _source_file(src)
        if found is None or found[0] is None:
            return False
        path, kind = found
        if kind == "safetensors":
            return _looks_like_ours(_safetensors_keys(path))
        return _pickle_mentions_signature(path) and _looks_like_ours(_torch_state_dict(path))
    except Exception:
        return False


# starkdmi/mossformer_ss_mlx names -> reference names (regex, replacement), applied in order
_STARKDMI = [
    (r"\.(to_hidden|to_qk|to_out|to_u|to_v)\.norm\.", r".\1.mdl.0."),
    (r"\.(to_hidden|to_qk|to_out|to_u|to_v)\.linear\.", r".\1.mdl.1."),
    (
        r"\.(to_hidden|to_qk|to_out|to_u|to_v)\.conv_module\.weight$",
        r".\1.mdl.3.sequential.1.conv.weight",
    ),
    (r"(\.fsmn\.\d+)\.conv1\.(weight|bias)$", r"\1.conv1.0.\2"),
    (r"(\.fsmn\.\d+)\.prelu\.weight$", r"\1.conv1.1.weight"),
    (r"\.conv\.convs\.(\d+)\.", lambda m: f".conv.conv{int(m.group(1)) + 1}."),
    (r"\.conv\.norms\.(\d+)\.", lambda m: f".conv.norm{int(m.group(1)) + 1}."),
    (r"\.conv\.prelus\.(\d+)\.", lambda m: f".conv.prelu{int(m.group(1)) + 1}."),
    (r"^mask_net\.(output|output_gate)\.(weight|bias)$", r"mask_net.\1.0.\2"),
]


def starkdmi_to_reference(weights: dict[str, Any]) -> dict[str, Any]:
    """Rename starkdmi's MLX keys to the reference names (no-op on reference names)."""
    out = {}
    for k, v in weights.items():
        k = _strip(k)
        for pat, rep in _STARKDMI:
            k = re.sub(pat, rep, k)
        out[k] = v
    return out


def infer_args(weights: dict[str, Any]) -> dict[str, Any]:
    """Architecture sizes read off the weight shapes (reference names, any layout)."""
    enc = weights["enc.conv1d.weight"].shape  # torch (N, 1, K) or MLX (N, K, 1)
    n_in = enc[0]
    k = enc[2] if enc[1] == 1 else enc[1]
    n = weights["mask_net.conv1d_encoder.weight"].shape[0]
    layers = {
        int(m.group(1))
        for key in weights
        if (m := re.match(r"mask_net\.mdl\.intra_mdl\.mossformerM\.layers\.(\d+)\.", key))
    }
    out_ch = weights["mask_net.conv1d_out.weight"].shape[0]
    if out_ch % n:
        raise ConversionError(
            f"mask_net.conv1d_out.weight: {out_ch} output channels is not a "
            f"multiple of the sequence dim {n}"
        )
    qk = weights["mask_net.mdl.intra_mdl.mossformerM.layers.0.qk_offset_scale.gamma"].shape[1]
    return {
        "num_spks": out_ch // n,
        "encoder_kernel_size": int(k),
        "encoder_embedding_dim": int(n_in),
        "mossformer_sequence_dim": int(n),
        "num_mossformer_layer": len(layers),
        "query_key_dim": int(qk),
    }


def _yaml_settings(folder: Path) -> dict[str, Any]:
    import yaml

    for y in sorted(folder.glob("*.yaml")):
        if not y.is_file() or y.stat().st_size > MAX_YAML_BYTES:
            continue  # an inference yaml is a few KB
        inside(y, folder, "a symlink", ConversionError)
        try:
            d = yaml.safe_load(y.read_text())
        except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError):
            continue
        if isinstance(d, dict) and "num_spks" in d:
            for k in ("num_spks", "sampling_rate", "one_time_decode_length", "decode_window"):
                v = d.get(k)
                if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
                    raise ConversionError(f"{y}: {k} = {v!r}: expected a number")
                if v is not None and not 0 < v <= 1e6:
                    raise ConversionError(f"{y}: {k} = {v!r}: out of range (0, 1e6]")
            return d
    return {}


def _add_defaults(weights: dict[str, Any], args: dict[str, Any]) -> dict[str, Any]:
    """Non-learned tensors the reference stores but the MLX layout may lack."""
    from ..models.mossformer2.model import ModelArgs

    a = ModelArgs.from_dict(args, "mossformer2 args", ConversionError)
    rot = min(32, a.query_key_dim)
    freqs = (1.0 / (10000 ** (np.arange(0, rot, 2, dtype=np.float32) / rot))).astype(np.float32)
    n = a.mossformer_sequence_dim
    inv = (1.0 / (10000 ** (np.arange(0, n, 2, dtype=np.float32) / n))).astype(np.float32)
    weights.setdefault("mask_net.pos_enc.inv_freq", inv)
    for i in range(a.num_mossformer_layer):
        weights.setdefault(
            f"mask_net.mdl.intra_mdl.mossformerM.layers.{i}.rotary_pos_emb.freqs", freqs
        )
    return weights


def convert(
    src: Path,
    sampling_rate: int | None = None,
    whamr: bool | None = None,
    num_spks: int | None = None,
    **_: Any,
) -> Converted:
    from ..models.mossformer2.model import ModelArgs, MossFormer2

    found = _source_file(src)
    if found is None or found[0] is None:
        raise ConversionError(
            f"{src}: not a MossFormer2 source (expected a ClearerVoice folder "
            f"with {BEST}, a .pt checkpoint or a .safetensors file)"
        )
    path, kind = found
    if src.is_dir():  # a file the folder holds must not lead out of it
        inside(path, src, "a symlink", ConversionError)
    if kind == "safetensors":
        import mlx.core as mx

        raw = {
            k: np.asarray(v.astype(mx.float32) if mx.issubdtype(v.dtype, mx.floating) else v)
            for k, v in load_safetensors(path, ConversionError).items()
        }
        weights = starkdmi_to_reference(raw)
    else:
        weights = {_strip(k): v for k, v in _torch_state_dict(path).items()}
    if not _looks_like_ours(weights):
        missing = [s for s in SIGNATURE if s not in weights]
        raise ConversionError(
            f"{path}: not a MossFormer2 separation checkpoint (missing {missing})"
        )
    try:
        args = infer_args(weights)
    except (KeyError, IndexError, AttributeError, TypeError) as exc:
        raise ConversionError(
            f"{path}: unexpected tensor layout ({type(exc).__name__}: {exc})"
        ) from None
    folder = path.parent
    cfg = _yaml_settings(folder)
    name = f"{src.resolve()}".upper()
    if num_spks is not None and num_spks != args["num_spks"]:
        raise ConversionError(
            f"{path}: the weights separate {args['num_spks']} speakers, "
            f"but num_spks={num_spks} was asked for"
        )
    if "num_spks" in cfg and int(cfg["num_spks"]) != args["num_spks"]:
        raise ConversionError(
            f"{path}: the weights separate {args['num_spks']} speakers, but "
            f"the yaml config says num_spks={cfg['num_spks']}"
        )
    sr = (
        sampling_rate
        or cfg.get("sampling_rate")
        or (8000 if re.search(r"(?<![0-9])8K", name) else 16000)
    )
    args["sampling_rate"] = int(sr)
    args["skip_mask_multiplication"] = bool("WHAMR" in name if whamr is None else whamr)
    weights = _add_defaults(weights, args)
    margs = ModelArgs.from_dict(args, f"{path}: args", ConversionError)
    model = MossFormer2(margs)  # lazy: its parameters only record shapes
    weights = model.sanitize(weights)
    check_weights(param_shapes(model), weights, str(path))  # unrelated or missing keys are named
    inference = {k: cfg[k] for k in ("one_time_decode_length", "decode_window") if k in cfg}
    config = {
        "model_type": MODEL_TYPE,
        "args": margs.to_dict(),
        "source_format": "starkdmi-mlx" if kind == "safetensors" else "clearvoice-torch",
    }
    if inference:
        config["inference"] = inference
    return Converted(weights=weights, config=config, source_files=[path])


register(
    Converter(
        model_type=MODEL_TYPE,
        description="MossFormer2 speech separation (ClearerVoice MossFormer2_SS_16K checkpoint "
        "folder/.pt, or starkdmi/mossformer_ss_mlx safetensors); 2/3 speakers, 8/16 kHz",
        detect=detect,
        convert=convert,
        hub_patterns=("*.safetensors", "*.json", "*.yaml", "last_best_checkpoint", "*.pt"),
    )
)
