"""SpeechBrain ECAPA-TDNN folders (spkrec-ecapa-voxceleb layout) -> MLX.

Source folder: `hyperparams.yaml` (its `embedding_model: !new:...ECAPA_TDNN` args, the Fbank
and mean-normalization settings), `embedding_model.ckpt` (torch zip of the state dict, read by
the safe reader), and optionally `mean_var_norm_emb.ckpt` (global embedding mean/std).

hyperparams.yaml is HyperPyYAML: it is parsed with `yaml.safe_load` plus constructors that turn
`!new:` / `!name:` / `!apply:` / `!ref` / `!copy` tags into inert values; nothing is imported
or executed.
"""

from __future__ import annotations

import ast
import operator
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConversionError
from . import Converted, Converter, register
from .torch_pickle import load_torch_checkpoint

ECAPA_CLASS = "speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN"
FBANK_CLASS = "speechbrain.lobes.features.Fbank"
NORM_CLASS = "speechbrain.processing.features.InputNormalization"
CKPT, HPARAMS, EMB_NORM = "embedding_model.ckpt", "hyperparams.yaml", "mean_var_norm_emb.ckpt"
# the ECAPA_TDNN arguments the MLX model implements (others must keep their defaults)
ECAPA_KEYS = (
    "input_size",
    "channels",
    "kernel_sizes",
    "dilations",
    "attention_channels",
    "res2net_scale",
    "se_channels",
    "global_context",
    "groups",
    "lin_neurons",
)
FBANK_KEYS = (
    "n_mels",
    "sample_rate",
    "n_fft",
    "win_length",
    "hop_length",
    "f_min",
    "f_max",
    "filter_shape",
)


class Tagged:
    """An inert `!new:cls` / `!name:fn` / `!apply:fn` node: the dotted name and its arguments."""

    def __init__(self, kind: str, target: str, args: Any):
        self.kind, self.target, self.args = kind, target, args

    def __repr__(self) -> str:
        return f"!{self.kind}:{self.target}"


class Ref:
    """An unresolved `!ref <key>` (or `!copy`) expression."""

    def __init__(self, expr: str):
        self.expr = expr


def _loader():
    import yaml

    class HyperLoader(yaml.SafeLoader):
        pass

    def node_value(loader, node):
        if isinstance(node, yaml.MappingNode):
            return loader.construct_mapping(node, deep=True)
        if isinstance(node, yaml.SequenceNode):
            return loader.construct_sequence(node, deep=True)
        value = loader.construct_scalar(node)
        return None if value == "" else value

    for kind in ("new", "name", "apply", "module"):
        HyperLoader.add_multi_constructor(
            f"!{kind}:", lambda ld, suffix, node, k=kind: Tagged(k, suffix, node_value(ld, node))
        )
    for tag in ("!ref", "!copy"):
        HyperLoader.add_constructor(tag, lambda ld, node: Ref(ld.construct_scalar(node)))
    HyperLoader.add_multi_constructor("!", lambda ld, suffix, node: node_value(ld, node))
    return HyperLoader


_OPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Pow: operator.pow,
    ast.USub: operator.neg,
    ast.Mod: operator.mod,
}


def _arith(expr: str):
    """Evaluate a number-only arithmetic expression (HyperPyYAML allows `!ref <a> * 2`)."""

    def ev(n):
        if isinstance(n, ast.Constant) and isinstance(n.value, (int, float)):
            return n.value
        if isinstance(n, ast.BinOp) and type(n.op) in _OPS:
            return _OPS[type(n.op)](ev(n.left), ev(n.right))
        if isinstance(n, ast.UnaryOp) and type(n.op) in _OPS:
            return _OPS[type(n.op)](ev(n.operand))
        raise ValueError(expr)

    return ev(ast.parse(expr, mode="eval").body)


def _resolve(value: Any, root: dict, path: Path, depth: int = 0) -> Any:
    """Replace `Ref` nodes by the referenced top-level values (recursively)."""
    if depth > 20:
        raise ConversionError(f"{path}: !ref chain too deep (a reference cycle?)")
    if isinstance(value, Ref):
        expr = value.expr.strip()
        whole = re.fullmatch(r"<([^<>]+)>", expr)

        def lookup(key: str):
            cur: Any = root
            for part in key.split("."):
                if not isinstance(cur, dict) or part not in cur:
                    raise ConversionError(f"{path}: !ref <{key}>: no such key")
                cur = cur[part]
            return _resolve(cur, root, path, depth + 1)

        if whole:
            return lookup(whole.group(1))
        text = re.sub(r"<([^<>]+)>", lambda m: str(lookup(m.group(1))), expr)
        try:
            return _arith(text)
        except (ValueError, SyntaxError, ZeroDivisionError):
            return text
    if isinstance(value, dict):
        return {k: _resolve(v, root, path, depth) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, root, path, depth) for v in value]
    if isinstance(value, Tagged):
        return Tagged(value.kind, value.target, _resolve(value.args, root, path, depth))
    return value


def read_hyperparams(path: str | Path) -> dict[str, Any]:
    """Parse a SpeechBrain hyperparams.yaml safely; tags become `Tagged` / resolved values."""
    import yaml

    path = Path(path)
    try:
        root = yaml.load(path.read_text(), Loader=_loader())  # noqa: S506 (safe loader subclass)
    except (OSError, yaml.YAMLError) as exc:
        raise ConversionError(f"{path}: cannot read as YAML ({exc})") from exc
    if not isinstance(root, dict):
        raise ConversionError(f"{path}: expected a mapping at the top, got {type(root).__name__}")
    return _resolve(root, root, path)


def _kwargs(node: Tagged, path: Path, what: str) -> dict:
    if node.args is None:
        return {}
    if not isinstance(node.args, dict):
        raise ConversionError(f"{path}: {what}: expected keyword arguments, got {node.args!r}")
    return node.args


def ecapa_config(hp_path: str | Path) -> dict[str, Any]:
    """The model args, front end and normalization settings from hyperparams.yaml."""
    hp_path = Path(hp_path)
    hp = read_hyperparams(hp_path)
    emb = hp.get("embedding_model")
    if not isinstance(emb, Tagged) or emb.kind != "new":
        raise ConversionError(
            f"{hp_path}: no `embedding_model: !new:...` entry; not a "
            f"SpeechBrain speaker-embedding hyperparams.yaml"
        )
    if emb.target != ECAPA_CLASS:
        raise ConversionError(
            f"{hp_path}: embedding_model is {emb.target}, expected "
            f"{ECAPA_CLASS} (this converter handles ECAPA-TDNN only)"
        )
    kw = _kwargs(emb, hp_path, "embedding_model")
    act = kw.get("activation")
    if act is not None and not (isinstance(act, Tagged) and act.target == "torch.nn.ReLU"):
        raise ConversionError(
            f"{hp_path}: embedding_model activation {act!r} is not supported (only torch.nn.ReLU)"
        )
    unknown = sorted(set(kw) - set(ECAPA_KEYS) - {"activation", "device", "dropout"})
    if unknown:
        raise ConversionError(
            f"{hp_path}: embedding_model has arguments this port does not implement: {unknown}"
        )
    args = {k: kw[k] for k in ECAPA_KEYS if k in kw}
    fbank: dict[str, Any] = {"n_mels": 40}
    feats = hp.get("compute_features")
    if isinstance(feats, Tagged):
        if feats.target != FBANK_CLASS:
            raise ConversionError(
                f"{hp_path}: compute_features is {feats.target}, expected {FBANK_CLASS}"
            )
        fk = _kwargs(feats, hp_path, "compute_features")
        for flag in ("deltas", "context", "requires_grad"):
            if fk.get(flag):
                raise ConversionError(f"{hp_path}: Fbank {flag}=True is not supported")
        fbank.update({k: fk[k] for k in FBANK_KEYS if k in fk})
    norm = {"norm_type": "sentence", "std_norm": True, "enabled": False}
    mvn = hp.get("mean_var_norm")
    if isinstance(mvn, Tagged) and mvn.target == NORM_CLASS:
        nk = _kwargs(mvn, hp_path, "mean_var_norm")
        norm = {
            "norm_type": nk.get("norm_type", "global"),
            "std_norm": bool(nk.get("std_norm", True)),
            "enabled": True,
        }
        if norm["norm_type"] != "sentence":
            raise ConversionError(
                f"{hp_path}: mean_var_norm norm_type "
                f"{norm['norm_type']!r} is not supported (only 'sentence')"
            )
    emb_std = True
    mve = hp.get("mean_var_norm_emb")
    if isinstance(mve, Tagged) and mve.target == NORM_CLASS:
        emb_std = bool(_kwargs(mve, hp_path, "mean_var_norm_emb").get("std_norm", True))
    return {"args": args, "fbank": fbank, "mean_var_norm": norm, "emb_norm_std": emb_std}


def _folder(src: Path) -> Path:
    return src.parent if src.is_file() else src


def detect(src: Path) -> bool:
    """A folder (or its embedding_model.ckpt) whose hyperparams.yaml builds an ECAPA_TDNN."""
    d = _folder(src)
    hp = d / HPARAMS
    if not (hp.is_file() and (d / CKPT).is_file()):
        return False
    try:
        text = hp.read_text(errors="replace")
    except OSError:
        return False
    return re.search(r"embedding_model:\s*!new:" + re.escape(ECAPA_CLASS) + r"\b", text) is not None


def _emb_norm(path: Path) -> dict[str, np.ndarray]:
    state = load_torch_checkpoint(path)
    if not isinstance(state, dict) or "glob_mean" not in state:
        raise ConversionError(
            f"{path}: expected InputNormalization statistics with "
            f"'glob_mean', got {type(state).__name__} "
            f"{sorted(state) if isinstance(state, dict) else ''}"
        )
    mean = np.asarray(state["glob_mean"], np.float32).reshape(-1)
    std = np.asarray(state.get("glob_std", np.ones_like(mean)), np.float32).reshape(-1)
    return {"emb_norm.glob_mean": mean, "emb_norm.glob_std": std}


def convert_ecapa(src: Path, **_opts: Any) -> Converted:
    """Read the folder, check every key/shape against the MLX model, return MLX weights."""
    from ..models.ecapa.model import ECAPA_TDNN, EcapaArgs, expected_shapes, sanitize
    from ..weights_io import check_weights

    d = _folder(Path(src))
    hp, ckpt = d / HPARAMS, d / CKPT
    for p in (hp, ckpt):
        if not p.is_file():
            raise ConversionError(
                f"{d}: missing {p.name} (a SpeechBrain ECAPA folder holds "
                f"{HPARAMS} and {CKPT}, optionally {EMB_NORM})"
            )
    cfg = ecapa_config(hp)
    try:
        args = EcapaArgs(**cfg["args"])
        model = ECAPA_TDNN(args)
    except (TypeError, ValueError) as exc:
        raise ConversionError(f"{hp}: embedding_model arguments: {exc}") from exc
    state = load_torch_checkpoint(ckpt)
    if not isinstance(state, dict):
        raise ConversionError(f"{ckpt}: expected a state dict, got {type(state).__name__}")
    expected = expected_shapes(model)
    weights = sanitize(state, expected)
    check_weights(expected, weights, str(ckpt))
    sources = [hp, ckpt]
    if (d / EMB_NORM).is_file():
        weights.update(_emb_norm(d / EMB_NORM))
        sources.append(d / EMB_NORM)
    config = {
        "model_type": "ecapa",
        "args": vars(args),
        "fbank": cfg["fbank"],
        "mean_var_norm": cfg["mean_var_norm"],
        "emb_norm_std": cfg["emb_norm_std"],
        "reference": "speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN",
    }
    return Converted(weights=weights, config=config, source_files=sources)


register(
    Converter(
        model_type="ecapa",
        description="SpeechBrain ECAPA-TDNN speaker embeddings (spkrec-ecapa-voxceleb layout)",
        detect=detect,
        convert=convert_ecapa,
        hub_patterns=(HPARAMS, CKPT, EMB_NORM, "label_encoder.txt"),
        keep_float32=lambda name: "running_" in name or name.startswith("emb_norm."),
    )
)
