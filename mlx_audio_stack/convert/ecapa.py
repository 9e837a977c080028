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
import math
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


# Limits on hyperparams.yaml (a real one: ~3 KB, a few hundred nodes, a dozen aliases, !ref
# arithmetic on small numbers). Anything beyond is refused, naming the limit.
MAX_YAML_BYTES = 1 << 20
MAX_YAML_NODES = 100_000  # nodes composed, and values visited while resolving !ref
MAX_YAML_ALIASES = 1_000
MAX_EXPR_CHARS = 1_000
MAX_NUMBER = 2**63  # operands and results of !ref arithmetic, in absolute value


def _loader(path: Path):
    import yaml

    class HyperLoader(yaml.SafeLoader):
        nodes = 0
        aliases = 0

        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                self.aliases += 1
                if self.aliases > MAX_YAML_ALIASES:
                    raise ConversionError(
                        f"{path}: more than {MAX_YAML_ALIASES} YAML aliases (refused: alias "
                        f"expansion, a 'billion laughs' file)"
                    )
            self.nodes += 1
            if self.nodes > MAX_YAML_NODES:
                raise ConversionError(f"{path}: more than {MAX_YAML_NODES} YAML nodes (refused)")
            return super().compose_node(parent, index)

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


def _arith(expr: str, path: Path):
    """Evaluate a number-only arithmetic expression (HyperPyYAML allows `!ref <a> * 2`), with
    every operand and result bounded by MAX_NUMBER and `**` refused when its result would be
    (so `<n> ** <n> ** <n>` is an error, not an endless computation)."""

    def bounded(x):
        if isinstance(x, bool) or not isinstance(x, (int, float)):
            raise ValueError(expr)
        if abs(x) > MAX_NUMBER or x != x:
            raise ConversionError(f"{path}: !ref {expr!r}: a value exceeds {MAX_NUMBER:.3g}")
        return x

    def ev(n):
        if isinstance(n, ast.Constant) and isinstance(n.value, (int, float)):
            return bounded(n.value)
        if isinstance(n, ast.BinOp) and type(n.op) in _OPS:
            a, b = ev(n.left), ev(n.right)
            if isinstance(n.op, ast.Pow) and a not in (0, 1, -1):
                if abs(b) * math.log2(max(abs(a), 2)) > 63:
                    raise ConversionError(
                        f"{path}: !ref {expr!r}: {a} ** {b} exceeds {MAX_NUMBER:.3g} (refused)"
                    )
            return bounded(_OPS[type(n.op)](a, b))
        if isinstance(n, ast.UnaryOp) and type(n.op) in _OPS:
            return bounded(_OPS[type(n.op)](ev(n.operand)))
        raise ValueError(expr)

    if len(expr) > MAX_EXPR_CHARS:
        raise ConversionError(f"{path}: !ref expression over {MAX_EXPR_CHARS} characters")
    try:
        return ev(ast.parse(expr, mode="eval").body)
    except (OverflowError, ZeroDivisionError, RecursionError, MemoryError):
        raise ConversionError(f"{path}: !ref {expr[:80]!r}: cannot evaluate") from None


def _resolve(value: Any, root: dict, path: Path, depth: int = 0, budget=None) -> Any:
    """Replace `Ref` nodes by the referenced top-level values (recursively); at most
    MAX_YAML_NODES values are visited (aliases and !ref would otherwise multiply them)."""
    budget = budget if budget is not None else [MAX_YAML_NODES]
    budget[0] -= 1
    if budget[0] < 0:
        raise ConversionError(
            f"{path}: resolving !ref / aliases visits over {MAX_YAML_NODES} values (refused)"
        )
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
            return _resolve(cur, root, path, depth + 1, budget)

        if whole:
            return lookup(whole.group(1))
        text = re.sub(r"<([^<>]+)>", lambda m: str(lookup(m.group(1)))[:MAX_EXPR_CHARS], expr)
        try:
            return _arith(text, path)
        except (ValueError, SyntaxError):
            return text
    if isinstance(value, dict):
        return {k: _resolve(v, root, path, depth, budget) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, root, path, depth, budget) for v in value]
    if isinstance(value, Tagged):
        return Tagged(value.kind, value.target, _resolve(value.args, root, path, depth, budget))
    return value


def read_hyperparams(path: str | Path) -> dict[str, Any]:
    """Parse a SpeechBrain hyperparams.yaml safely; tags become `Tagged` / resolved values."""
    import yaml

    path = Path(path)
    if path.stat().st_size > MAX_YAML_BYTES:
        raise ConversionError(f"{path}: over {MAX_YAML_BYTES} bytes; not a hyperparams.yaml")
    try:
        text = path.read_text()
        root = yaml.load(text, Loader=_loader(path))  # noqa: S506 (safe loader subclass)
    except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError, ValueError) as exc:
        msg = " ".join(str(exc).split())[:200]
        raise ConversionError(f"{path}: cannot read as YAML ({msg})") from None
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
        with open(hp, "rb") as f:
            text = f.read(MAX_YAML_BYTES).decode("utf-8", errors="replace")
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
    from ..models.ecapa.fbank import FBANK_LIMITS, FbankArgs
    from ..models.ecapa.model import ARG_LIMITS, ECAPA_TDNN, EcapaArgs
    from ..weights_io import check_weights, checked_args, inside, param_shapes

    d = _folder(Path(src))
    hp, ckpt = d / HPARAMS, d / CKPT
    for p in (hp, ckpt):
        if not p.is_file():
            raise ConversionError(
                f"{d}: missing {p.name} (a SpeechBrain ECAPA folder holds "
                f"{HPARAMS} and {CKPT}, optionally {EMB_NORM})"
            )
    for p in (hp, ckpt, d / EMB_NORM):
        if p.exists():
            inside(p, d, "a symlink", ConversionError)
    cfg = ecapa_config(hp)
    args = checked_args(
        EcapaArgs, cfg["args"], f"{hp}: embedding_model", ConversionError, ARG_LIMITS
    )
    checked_args(FbankArgs, cfg["fbank"], f"{hp}: compute_features", ConversionError, FBANK_LIMITS)
    model = ECAPA_TDNN(args)
    state = load_torch_checkpoint(ckpt)
    if not isinstance(state, dict):
        raise ConversionError(f"{ckpt}: expected a state dict, got {type(state).__name__}")
    weights = model.sanitize(state)
    check_weights(param_shapes(model), weights, str(ckpt))
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
