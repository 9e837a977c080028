"""Converted-weights folders: `model.safetensors` + `config.json`, written atomically, loaded
strictly (equal key sets and shapes, every difference named)."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import struct
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import atomic_output, remove_stale
from .errors import MasError, WeightsError

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
    remove_stale(out)  # may put back an old folder whose replacement was killed
    if out.exists() and not overwrite:
        raise WeightsError(f"{out}: already exists (pass overwrite=True / --force to replace it)")
    with atomic_output(out, directory=True) as tmp:
        arrays = {k: v if isinstance(v, mx.array) else mx.array(v) for k, v in weights.items()}
        mx.save_safetensors(str(tmp / WEIGHTS_FILE), arrays, metadata={"format": "mlx"})
        config = {**config, "converter_version": CONVERTER_VERSION}
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=False) + "\n")
        for name, src in (extra_files or {}).items():
            with open(src, "rb") as fin, open(tmp / name, "wb") as fout:
                while block := fin.read(1 << 22):
                    fout.write(block)
    return out


# ---------------------------------------------------------------- paths inside a folder
def inside(path: str | Path, root: str | Path, what: str, error: type[MasError] = WeightsError):
    """`path` resolved (symlinks followed), refused unless it stays inside folder `root` (or,
    for a Hugging Face cache snapshot, inside that repository's own `blobs/`)."""
    root_r = Path(root).resolve()
    allowed = [root_r]
    if root_r.parent.name == "snapshots" and (root_r.parent.parent / "blobs").is_dir():
        allowed.append(root_r.parent.parent / "blobs")  # a Hugging Face cache snapshot's files
    p = Path(path)
    resolved = (p if p.is_absolute() else Path(root) / p).resolve()
    if not any(resolved == a or a in resolved.parents for a in allowed):
        raise error(
            f"{Path(root) / p if not p.is_absolute() else p}: {what} leads outside "
            f"{Path(root)} (to {resolved}); refused"
        )
    return resolved


# ---------------------------------------------------------------- safetensors headers
SAFETENSORS_DTYPES = {
    "BOOL": 1, "U8": 1, "I8": 1, "U16": 2, "I16": 2, "F16": 2, "BF16": 2,
    "U32": 4, "I32": 4, "F32": 4, "U64": 8, "I64": 8, "F64": 8,
}  # fmt: skip
MAX_HEADER_BYTES = 100_000_000  # the safetensors library's own limit


def safetensors_header(path: str | Path, error: type[MasError] = WeightsError) -> dict:
    """Read and check a .safetensors header: JSON object, known dtypes, integer shapes,
    offsets inside the file, byte counts equal to product(shape) * itemsize, no overlaps.
    Returns {name: {"dtype", "shape", "data_offsets"}} (without `__metadata__`)."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: not a regular file")
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise error(f"{path}: not a safetensors file ({size} bytes, no header)")
        (n,) = struct.unpack("<Q", head)
        if n < 2 or n > min(MAX_HEADER_BYTES, size - 8):
            raise error(
                f"{path}: safetensors header length {n} is impossible for a {size}-byte file"
            )
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise error(f"{path}: safetensors header is not valid JSON ({exc})") from None
    if not isinstance(header, dict):
        raise error(f"{path}: safetensors header is a {type(header).__name__}, not an object")
    meta = header.pop("__metadata__", None) or {}  # MLX writes null when there is none
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise error(f"{path}: safetensors __metadata__ must map strings to strings")
    data_len = size - 8 - n
    spans = []
    for name, e in header.items():
        where = f"{path}: tensor {name!r}"
        if not isinstance(e, dict) or set(e) != {"dtype", "shape", "data_offsets"}:
            raise error(f"{where}: entry must hold exactly dtype, shape, data_offsets")
        dtype, shape, offs = e["dtype"], e["shape"], e["data_offsets"]
        if dtype not in SAFETENSORS_DTYPES:
            raise error(f"{where}: unknown dtype {dtype!r} (known: {sorted(SAFETENSORS_DTYPES)})")
        if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
            raise error(f"{where}: shape {shape!r} is not a list of integers >= 0")
        if (
            not isinstance(offs, list)
            or len(offs) != 2
            or not all(_is_int(o) for o in offs)
            or not 0 <= offs[0] <= offs[1] <= data_len
        ):
            raise error(f"{where}: data_offsets {offs!r} outside the {data_len}-byte data")
        need = math.prod(shape) * SAFETENSORS_DTYPES[dtype]
        if offs[1] - offs[0] != need:
            raise error(
                f"{where}: {dtype} {shape} needs {need} bytes, data_offsets give "
                f"{offs[1] - offs[0]}"
            )
        spans.append((offs[0], offs[1], name))
    spans.sort()
    for (_a0, a1, a), (b0, _b1, b) in zip(spans, spans[1:]):
        if b0 < a1:
            raise error(f"{path}: tensors {a!r} and {b!r} overlap (bytes {b0}..{a1})")
    return header


def load_safetensors(path: str | Path, error: type[MasError] = WeightsError) -> dict[str, Any]:
    """mx.load of a .safetensors file whose header passed `safetensors_header`."""
    import mlx.core as mx

    safetensors_header(path, error)
    try:
        return mx.load(str(path))
    except Exception as exc:  # a header MLX still refuses
        raise error(f"{path}: cannot read safetensors ({exc})") from None


# ---------------------------------------------------------------- config args
MAX_INT = 10_000_000  # default cap on an int field (vocab_size <= 10M, ...)


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _as_int(v: Any) -> int | None:
    if _is_int(v):
        return v
    if isinstance(v, float) and math.isfinite(v) and v.is_integer():
        return int(v)  # YAML arithmetic (`!ref <c> / 2`) gives 256.0
    return None


def checked_args(
    cls: type,
    d: Any,
    where: str,
    error: type[MasError] = WeightsError,
    limits: Mapping[str, tuple[float, float]] | None = None,
):
    """Build dataclass `cls` from the config mapping `d`, checked against its field types:
    int fields take integers only (5.5 is an error; 5.0 is 5), ranges default to 1..MAX_INT
    (ints, list items) and (0, 1e6] (floats), overridden per field by `limits`; bools must be
    bools, strings strings. Unknown keys and missing required keys are errors. Then the
    instance's `check()` (divisibility and such; raises ValueError) runs. Every error names
    `where`, the field and the value."""
    if not isinstance(d, Mapping):
        raise error(f"{where}: args must be an object, got {type(d).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - set(fields))
    if unknown:
        raise error(f"{where}: unknown args {unknown} (expected {sorted(fields)})")
    missing = [
        k
        for k, f in fields.items()
        if k not in d
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise error(f"{where}: missing args {missing}")
    limits = limits or {}
    values = {}
    for k, v in d.items():
        t = hints[k]
        optional = type(None) in typing.get_args(t)  # `float | None`
        if optional:
            if v is None:
                values[k] = v
                continue
            t = next(a for a in typing.get_args(t) if a is not type(None))
        lo, hi = limits.get(k, (1, MAX_INT))
        bad = f"{where}: {k} = {v!r}"
        if t is bool:
            if not isinstance(v, bool):
                raise error(f"{bad}: expected true or false")
        elif t is int or typing.get_origin(t) is list:
            items = v if typing.get_origin(t) is list else [v]
            if typing.get_origin(t) is list and (not isinstance(v, list) or not v):
                raise error(f"{bad}: expected a non-empty list of integers")
            ints = [_as_int(x) for x in items]
            if any(x is None for x in ints):
                raise error(f"{bad}: expected {'integers' if len(items) > 1 else 'an integer'}")
            if not all(lo <= x <= hi for x in ints):
                raise error(f"{bad}: out of range [{lo}, {hi}]")
            v = ints if typing.get_origin(t) is list else ints[0]
        elif t is float:
            lo, hi = limits.get(k, (0, 1e6))
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise error(f"{bad}: expected a finite number")
            if not (lo < v <= hi):
                raise error(f"{bad}: out of range ({lo}, {hi}]")
            v = float(v)
        elif t is str and not isinstance(v, str):
            raise error(f"{bad}: expected a string")
        values[k] = v
    obj = cls(**values)
    if hasattr(obj, "check"):
        try:
            obj.check()
        except ValueError as exc:
            raise error(f"{where}: {exc}") from None
    return obj


@contextlib.contextmanager
def load_errors(path: str | Path, what: str) -> Iterator[None]:
    """Turn anything a malformed weights folder provokes into one WeightsError line."""
    try:
        yield
    except MasError:
        raise
    except Exception as exc:
        msg = str(exc).splitlines()[0][:200] if str(exc) else ""
        raise WeightsError(
            f"{path}: cannot load as {what}: malformed folder ({type(exc).__name__}: {msg})"
        ) from exc


def load_model_dir(
    path: str | Path, model_type: str | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return (config, weights) of a converted folder; clear errors when it is not one.
    The safetensors header is checked before MLX reads it; the config must be an object
    and, when `model_type` is given, name that model type."""
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
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise WeightsError(f"{cfg_path}: invalid JSON ({exc})") from None
    if not isinstance(config, dict):
        raise WeightsError(f"{cfg_path}: expected a JSON object, got {type(config).__name__}")
    if model_type is not None and config.get("model_type") != model_type:
        raise WeightsError(
            f"{path}: model_type is {config.get('model_type')!r}, expected {model_type!r}"
        )
    weights = load_safetensors(w_path)
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


def param_shapes(module) -> dict[str, tuple[int, ...]]:
    """Parameter name -> shape of an mlx.nn.Module. MLX arrays are lazy: a freshly built
    module only records shapes here, nothing is computed."""
    from mlx.utils import tree_flatten

    return {k: tuple(v.shape) for k, v in tree_flatten(module.parameters())}


def channels_last(v: Any, want: tuple[int, ...], perm: tuple[int, ...] | None = None) -> Any:
    """A torch-layout conv weight in MLX's layout: (O, I, *K) -> (O, *K, I) (or `perm`), when
    that gives the shape the model wants. Anything else comes back unchanged (already in MLX
    layout, not a conv, or a mismatch that the strict load then names), so a model's
    `sanitize` that uses it is safe to run twice."""
    if want is None or len(v.shape) not in (3, 4) or tuple(v.shape) == tuple(want):
        return v
    perm = perm or (0, *range(2, len(v.shape)), 1)
    if tuple(v.shape[i] for i in perm) != tuple(want):
        return v
    if isinstance(v, np.ndarray):
        return np.ascontiguousarray(v.transpose(perm))
    return v.transpose(perm)


def load_strict(module, weights: Mapping[str, Any], where: str) -> None:
    """Load `weights` into an mlx.nn.Module after checking key sets and shapes exactly."""
    check_weights(param_shapes(module), weights, where)
    module.load_weights(list(weights.items()), strict=True)
