"""Read PyTorch checkpoints without importing torch and without running pickled code.

`torch.save` writes a zip: `<root>/data.pkl` (a pickle whose tensors are persistent ids
pointing at raw storages `<root>/data/<key>`), `<root>/byteorder`, `<root>/version`.
This reader unpickles `data.pkl` with an allow-list: only the globals that rebuild tensors,
storages and plain containers are resolved; any other global (`os.system`, `builtins.eval`,
a model class...) raises UnsafePickleError naming it, before anything runs.

TorchScript archives (`torch.jit.save`) hold `__torch__.*` module objects; with
`torchscript=True` those become inert `ScriptObject` attribute bags (no code is executed, the
archive's `code/` is never evaluated) so their parameters can be read.
"""

from __future__ import annotations

import _compat_pickle
import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConversionError, UnsafePickleError

# torch storage type name -> numpy dtype ("bfloat16" is read as uint16 and widened to float32)
STORAGE_DTYPES = {
    "DoubleStorage": np.float64,
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "BFloat16Storage": "bfloat16",
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class ScriptObject:
    """An inert stand-in for a TorchScript module object: attributes only, no methods."""

    _qualname = "ScriptObject"

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, dict):
            self.__dict__.update(state)
        else:
            self.__dict__["_state"] = state

    def __repr__(self) -> str:
        return f"<{self._qualname} {sorted(self.__dict__)}>"


class _StorageType:
    def __init__(self, name: str):
        self.name = name
        self.dtype = STORAGE_DTYPES[name]


def _rebuild_tensor(storage: np.ndarray, offset: int, size, stride, *_args, **_kw) -> np.ndarray:
    size, stride = tuple(size), tuple(stride)
    if len(size) == 0:
        return storage[offset].copy()
    if any(s == 0 for s in size):
        return np.zeros(size, dtype=storage.dtype)
    itemsize = storage.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
        storage[offset:], shape=size, strides=[s * itemsize for s in stride], writeable=False
    )
    return np.array(view)  # contiguous copy: the storage may be shared by several tensors


def _rebuild_parameter(data, *_args, **_kw):
    return data


def _rebuild_from_type_v2(func, _new_type, args, _state):
    return func(*args)


def _none(*_args, **_kw) -> None:
    return None


def _ordered_dict(*args, **kw):
    return OrderedDict(*args, **kw)


ALLOWED = {
    ("torch._utils", "_rebuild_tensor"): lambda s, o, sz, st: _rebuild_tensor(s, o, sz, st),
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
    ("collections", "OrderedDict"): _ordered_dict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "tuple"): tuple,
    ("builtins", "list"): list,
    ("builtins", "dict"): dict,
    ("builtins", "slice"): slice,
    ("torch", "device"): str,
    # TorchScript archives wrap lists and type tags in these (pure data, identity here)
    ("torch.jit._pickle", "build_intlist"): list,
    ("torch.jit._pickle", "build_doublelist"): list,
    ("torch.jit._pickle", "build_boollist"): list,
    ("torch.jit._pickle", "build_tensorlist"): list,
    ("torch.jit._pickle", "build_strlist"): list,
    ("torch.jit._pickle", "restore_type_tag"): lambda value, _type: value,
}


class SafeUnpickler(pickle.Unpickler):
    def __init__(self, file, storages, torchscript: bool, source: str, dry: bool = False):
        super().__init__(file)
        self._storages = storages
        self._torchscript = torchscript
        self._source = source
        self._dry = dry  # rebuild no tensor (legacy files: a first pass to learn the storages)

    def find_class(self, module: str, name: str):
        # protocol-2 pickles (torch.save's default) use Python 2 names: '__builtin__.set'
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if (module, name) in ALLOWED:
            if self._dry and module.startswith("torch._"):
                return _none
            return ALLOWED[(module, name)]
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        if self._torchscript and module.startswith("__torch__"):
            return type(name, (ScriptObject,), {"_qualname": f"{module}.{name}"})
        raise UnsafePickleError(
            f"{self._source}: refusing to load pickled global '{module}.{name}': only tensors "
            f"and plain containers are allowed (no code from a checkpoint is ever run)"
        )

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise UnsafePickleError(f"{self._source}: unsupported persistent id {pid!r}")
        _, storage_type, key, _location, _numel = pid[:5]
        if not isinstance(storage_type, _StorageType):
            raise UnsafePickleError(f"{self._source}: unexpected storage type {storage_type!r}")
        data = self._storages(str(key), storage_type.dtype)
        view = pid[5] if len(pid) > 5 else None  # legacy files: (view key, offset, size)
        if view is not None and data is not None:
            _view_key, offset, size = view
            return data[int(offset) : int(offset) + int(size)]
        return data


def _read_zip(path: Path, torchscript: bool) -> Any:
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        pkl = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if not pkl:
            raise ConversionError(f"{path}: zip file without data.pkl: not a PyTorch checkpoint")
        root = pkl[0][: -len("data.pkl")]
        byteorder = "little"
        if f"{root}byteorder" in names:
            byteorder = zf.read(f"{root}byteorder").decode().strip()
        cache: dict[str, np.ndarray] = {}

        def storage(key: str, dtype) -> np.ndarray:
            if key not in cache:
                raw = zf.read(f"{root}data/{key}")
                if isinstance(dtype, str):  # bfloat16: upper 16 bits of a float32
                    u16 = np.frombuffer(raw, dtype="<u2" if byteorder == "little" else ">u2")
                    cache[key] = (u16.astype(np.uint32) << 16).view(np.float32)
                else:
                    dt = np.dtype(dtype).newbyteorder("<" if byteorder == "little" else ">")
                    cache[key] = np.frombuffer(raw, dtype=dt).astype(np.dtype(dtype))
            return cache[key]

        with zf.open(pkl[0]) as f:
            return SafeUnpickler(f, storage, torchscript, str(path)).load()


def load_torch_checkpoint(path: str | Path, torchscript: bool = False) -> Any:
    """Load a `torch.save` (zip) file into plain Python containers of numpy arrays.

    Raises ConversionError for legacy (pre-1.6, non-zip) files and anything that is not a
    PyTorch checkpoint; UnsafePickleError for a global outside the allow-list.
    """
    path = Path(path)
    if not path.exists():
        raise ConversionError(f"{path}: no such file")
    if zipfile.is_zipfile(path):
        try:
            return _read_zip(path, torchscript)
        except (ConversionError, UnsafePickleError):
            raise
        except (pickle.UnpicklingError, KeyError, EOFError, ValueError) as exc:
            raise ConversionError(f"{path}: corrupt PyTorch checkpoint ({exc})") from exc
    with open(path, "rb") as f:
        head = f.read(2)
    if head[:1] == b"\x80":
        try:
            return _read_legacy(path, torchscript)
        except (ConversionError, UnsafePickleError):
            raise
        except (pickle.UnpicklingError, KeyError, EOFError, ValueError, TypeError) as exc:
            raise ConversionError(f"{path}: corrupt legacy PyTorch checkpoint ({exc})") from exc
    raise ConversionError(f"{path}: not a PyTorch checkpoint (not a zip archive)")


LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # torch.serialization.MAGIC_NUMBER
LEGACY_PROTOCOL = 1001


class _PlainUnpickler(pickle.Unpickler):
    """For the legacy header pickles (magic number, protocol, sys_info): no globals at all."""

    def find_class(self, module: str, name: str):
        raise UnsafePickleError(f"refusing pickled global '{module}.{name}' in a legacy header")


def _read_legacy(path: Path, torchscript: bool) -> Any:
    """A legacy (pre-1.6, `_use_new_zipfile_serialization=False`) `torch.save` file.

    Layout: five pickles back to back (magic number, protocol version, sys_info, the object,
    the sorted list of storage keys), then each storage as an int64 element count and its raw
    bytes. The storages' dtypes are named only inside the object's pickle, so it is read twice
    through the same allow-list: first with tensors rebuilt as None, to learn each storage's
    dtype and find where the storages start; then for real, with the storages read.
    """
    with open(path, "rb") as f:
        if _PlainUnpickler(f).load() != LEGACY_MAGIC:
            raise ConversionError(
                f"{path}: not a PyTorch checkpoint (a pickle, but not the legacy torch.save "
                f"format: no torch magic number)"
            )
        if (proto := _PlainUnpickler(f).load()) != LEGACY_PROTOCOL:
            raise ConversionError(f"{path}: unsupported legacy torch protocol {proto!r}")
        info = _PlainUnpickler(f).load()
        if isinstance(info, dict) and not info.get("little_endian", True):
            raise ConversionError(f"{path}: big-endian legacy checkpoints are not supported")
        obj_at = f.tell()
        dtypes: dict[str, Any] = {}
        SafeUnpickler(f, _recorder(dtypes), torchscript, str(path), dry=True).load()
        keys = _PlainUnpickler(f).load()
        if not isinstance(keys, list):
            raise ConversionError(f"{path}: legacy checkpoint without its storage key list")
        spans: dict[str, tuple[int, int]] = {}  # key -> (byte offset of its data, elements)
        for key in map(str, keys):
            (count,) = np.frombuffer(f.read(8), dtype="<i8")
            if key not in dtypes:
                raise ConversionError(f"{path}: storage {key!r} is not used by any tensor")
            spans[key] = (f.tell(), int(count))
            f.seek(int(count) * _itemsize(dtypes[key]), 1)

        data_file = open(path, "rb")  # noqa: SIM115 (closed below; the unpickler reads `f`)

        def storage(key: str, dtype) -> np.ndarray:
            if key not in spans:
                raise ConversionError(f"{path}: storage {key!r} missing from the legacy file")
            start, count = spans[key]
            data_file.seek(start)
            raw = data_file.read(count * _itemsize(dtype))
            if len(raw) != count * _itemsize(dtype):
                raise ConversionError(f"{path}: storage {key!r} is truncated")
            if isinstance(dtype, str):  # bfloat16: upper 16 bits of a float32
                return (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
            return np.frombuffer(raw, np.dtype(dtype).newbyteorder("<")).astype(dtype)

        f.seek(obj_at)
        cache: dict[str, np.ndarray] = {}

        def cached(key: str, dtype) -> np.ndarray:
            if key not in cache:
                cache[key] = storage(key, dtype)
            return cache[key]

        try:
            return SafeUnpickler(f, cached, torchscript, str(path)).load()
        finally:
            data_file.close()


def _itemsize(dtype) -> int:
    return 2 if isinstance(dtype, str) else np.dtype(dtype).itemsize


def _recorder(dtypes: dict[str, Any]):
    def record(key: str, dtype) -> None:
        dtypes[key] = dtype

    return record


def flatten_state_dict(obj: Any, prefix: str = "") -> dict[str, np.ndarray]:
    """Nested dicts of arrays -> {'a.b.c': array} (keys joined by '.')."""
    out: dict[str, np.ndarray] = {}
    if isinstance(obj, np.ndarray):
        out[prefix.rstrip(".")] = obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            out.update(flatten_state_dict(v, f"{prefix}{k}."))
    return out
