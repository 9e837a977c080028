"""Read PyTorch checkpoints without importing torch and without running pickled code.

`torch.save` writes a zip: `<root>/data.pkl` (a pickle whose tensors are persistent ids
pointing at raw storages `<root>/data/<key>`), `<root>/byteorder`, `<root>/version`.
This reader unpickles `data.pkl` with an allow-list: only the globals that rebuild tensors,
storages and plain containers are resolved; any other global (`os.system`, `builtins.eval`,
a model class...) raises UnsafePickleError naming it, before anything runs.

Legacy (pre-1.6, `_use_new_zipfile_serialization=False`) files are read too, by _torch_legacy.py
through the same allow-list; resemblyzer's `pretrained.pt` is one.

TorchScript archives (`torch.jit.save`) hold `__torch__.*` module objects; with
`torchscript=True` those become inert `ScriptObject` attribute bags (no code is executed, the
archive's `code/` is never evaluated) so their parameters can be read.
"""

from __future__ import annotations

import _compat_pickle
import io
import math
import os
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


# ---------------------------------------------------------------- limits
# A checkpoint is refused (never inflated) when it asks for more than these. Override the cap with
# the environment variable MAS_MAX_CHECKPOINT_BYTES (bytes) for a genuinely larger model.
MAX_BYTES_ENV = "MAS_MAX_CHECKPOINT_BYTES"
DEFAULT_MAX_BYTES = 32 << 30  # 32 GiB of tensor data: 5x Whisper large-v3 in float32
# compressed zip entries may inflate to at most this multiple of the checkpoint's size on disk
# (torch.save stores entries uncompressed; only re-zipped files compress, and weights compress
# at most ~1.2x: anything far above is a decompression bomb)
MAX_INFLATE_RATIO = 20
MAX_PICKLE_BYTES = 256 << 20  # the data.pkl itself: keys and tensor headers only
MAX_RANK = 32


def max_bytes() -> int:
    """The cap on tensor bytes one checkpoint may produce (env MAS_MAX_CHECKPOINT_BYTES)."""
    raw = os.environ.get(MAX_BYTES_ENV, "")
    try:
        return int(raw) if raw else DEFAULT_MAX_BYTES
    except ValueError:
        raise ConversionError(
            f"{MAX_BYTES_ENV}={raw!r}: expected a whole number of bytes"
        ) from None


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


class _Storage:
    """A storage the pickle refers to, read from the zip only when a tensor view needs it, and
    only as far as the views reach (never more than its entry declares)."""

    def __init__(self, archive: _Archive, key: str, dtype: Any, numel: Any):
        self.archive, self.key, self.dtype = archive, key, dtype
        self.np_dtype = np.dtype(np.uint16 if isinstance(dtype, str) else dtype)
        self.itemsize = self.np_dtype.itemsize
        self.name = f"{archive.root}data/{key}"
        where = f"{archive.path}: storage {self.name}"
        if not _is_int(numel) or numel < 0:
            raise ConversionError(f"{where}: invalid element count {numel!r}")
        try:
            info = archive.zf.getinfo(self.name)
        except KeyError:
            raise ConversionError(
                f"{where}: referenced by the pickle but missing from the zip"
            ) from None
        if info.file_size != numel * self.itemsize:
            raise ConversionError(
                f"{where}: the pickle declares {numel} elements ({numel * self.itemsize} bytes) "
                f"but the zip entry holds {info.file_size} bytes"
            )
        self.numel, self.info = numel, info
        self._data: np.ndarray | None = None

    def elements(self, n: int) -> np.ndarray:
        """The first `n` elements (n <= numel), read lazily and cached (read again if a later
        view reaches further)."""
        if self._data is None or len(self._data) < n:
            nbytes = n * self.itemsize
            self.archive.charge(nbytes, self.info, self.name)
            with self.archive.zf.open(self.info) as f:
                raw = f.read(nbytes)
            if len(raw) != nbytes:
                raise ConversionError(
                    f"{self.archive.path}: storage {self.name}: truncated "
                    f"({len(raw)} of {nbytes} bytes)"
                )
            self._data = _decode(raw, self.dtype, self.np_dtype, self.archive.byteorder)
        return self._data


def _decode(raw: bytes, dtype: Any, np_dtype: np.dtype, byteorder: str) -> np.ndarray:
    order = "<" if byteorder == "little" else ">"
    arr = np.frombuffer(raw, dtype=np_dtype.newbyteorder(order))
    if isinstance(dtype, str):  # bfloat16: the upper 16 bits of a float32
        return (arr.astype(np.uint32) << 16).view(np.float32)
    return arr.astype(np_dtype)


class _StorageSlice(_Storage):
    """A legacy view storage: `size` elements of `base` from element `start` (checked)."""

    def __init__(self, base: _Storage, start: Any, size: Any):
        where = f"{base.archive.path}: view of {base.name}"
        if not (_is_int(start) and _is_int(size) and start >= 0 and size >= 0):
            raise ConversionError(f"{where}: invalid view offset/size {start!r}, {size!r}")
        if start + size > base.numel:
            raise ConversionError(
                f"{where}: elements {start}..{start + size} beyond the storage's {base.numel}"
            )
        self.archive, self.key, self.dtype = base.archive, base.key, base.dtype
        self.np_dtype, self.itemsize = base.np_dtype, base.itemsize
        self.name = f"{base.name}[{start}:{start + size}]"
        self.base, self.start, self.numel = base, start, size

    def elements(self, n: int) -> np.ndarray:
        return self.base.elements(self.start + n)[self.start : self.start + n]


class _Archive:
    """The open zip, its byte budget, and the storages its pickle named."""

    def __init__(self, path: Path, zf: zipfile.ZipFile, root: str):
        self.path, self.zf, self.root = path, zf, root
        self.byteorder = "little"
        self.limit = max_bytes()
        self.inflate_limit = MAX_INFLATE_RATIO * max(path.stat().st_size, 1)
        self.read_bytes = 0
        self.inflated = 0
        self.out_bytes = 0
        self.storages: dict[str, _Storage] = {}

    def charge(
        self, nbytes: int, info: zipfile.ZipInfo | None, name: str, tensor: bool = True
    ) -> None:
        """Count bytes read (`info` None: a legacy file's raw storage, never compressed)."""
        self.read_bytes += nbytes if tensor else 0  # the pickle has its own cap
        if info is not None and info.compress_type != zipfile.ZIP_STORED:
            self.inflated += nbytes
            if self.inflated > self.inflate_limit:
                raise ConversionError(
                    f"{self.path}: {name}: compressed zip entries would inflate to over "
                    f"{MAX_INFLATE_RATIO}x the file size ({self.inflate_limit} bytes): refused "
                    f"as a decompression bomb (torch.save never compresses)"
                )
        if self.read_bytes > self.limit:
            raise ConversionError(
                f"{self.path}: {name}: tensor data exceeds {self.limit} bytes "
                f"({MAX_BYTES_ENV} raises this cap)"
            )

    def tensor_bytes(self, nbytes: int, where: str) -> None:
        self.out_bytes += nbytes
        if self.out_bytes > self.limit:
            raise ConversionError(
                f"{self.path}: {where}: tensors would take over {self.limit} bytes "
                f"({MAX_BYTES_ENV} raises this cap)"
            )

    def storage(self, key: str, dtype: Any, numel: Any) -> _Storage:
        if key not in self.storages:
            self.storages[key] = _Storage(self, key, dtype, numel)
        st = self.storages[key]
        if st.dtype != dtype:
            raise ConversionError(f"{self.path}: storage {st.name} is used with two dtypes")
        return st


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, *_a, **_kw) -> np.ndarray:
    """A tensor view (offset, size, stride in elements) of `storage`, checked against it first:
    every element the view can address must lie inside the storage."""
    if not isinstance(storage, _Storage):
        raise ConversionError(f"tensor built on {type(storage).__name__}, not a storage")
    where = f"{storage.archive.path}: tensor on {storage.name}"
    if not isinstance(size, (tuple, list)) or not isinstance(stride, (tuple, list)):
        raise ConversionError(f"{where}: size/stride must be tuples, got {size!r}, {stride!r}")
    size, stride = tuple(size), tuple(stride)
    if len(size) != len(stride) or len(size) > MAX_RANK:
        raise ConversionError(f"{where}: size {size} and stride {stride} do not match")
    if not _is_int(offset) or offset < 0:
        raise ConversionError(f"{where}: invalid storage offset {offset!r}")
    if not all(_is_int(x) and x >= 0 for x in size + stride):
        raise ConversionError(f"{where}: size {size} / stride {stride} must be integers >= 0")
    numel = math.prod(size)  # Python ints: no overflow
    if numel == 0:
        return np.zeros(
            size, dtype=np.float32 if isinstance(storage.dtype, str) else storage.np_dtype
        )
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))  # highest element addressed
    if last >= storage.numel:
        raise ConversionError(
            f"{where}: view (offset {offset}, size {size}, stride {stride}) reaches element "
            f"{last}, beyond the storage's {storage.numel} elements"
        )
    out_itemsize = 4 if isinstance(storage.dtype, str) else storage.itemsize  # bf16 -> f32
    storage.archive.tensor_bytes(numel * out_itemsize, storage.name)
    data = storage.elements(last + 1)
    if not size:
        return data[offset].copy()
    view = np.lib.stride_tricks.as_strided(
        data[offset:], shape=size, strides=[s * data.itemsize for s in stride], writeable=False
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
        self._dry = dry  # build no tensor (legacy files: a first pass to learn the storages)

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
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise UnsafePickleError(f"{self._source}: unsupported persistent id {pid!r}")
        _, storage_type, key, _location, numel = pid[:5]
        if not isinstance(storage_type, _StorageType):
            raise UnsafePickleError(f"{self._source}: unexpected storage type {storage_type!r}")
        if not isinstance(key, (str, int)) or not str(key).isalnum():
            raise ConversionError(f"{self._source}: invalid storage key {key!r}")
        st = self._storages(str(key), storage_type.dtype, numel)
        view = pid[5] if len(pid) > 5 else None  # legacy files: (view key, offset, size)
        if view is not None and st is not None:
            if not (isinstance(view, tuple) and len(view) == 3):
                raise ConversionError(f"{self._source}: invalid storage view {view!r}")
            return _StorageSlice(st, view[1], view[2])
        return st


def _read_zip(path: Path, torchscript: bool) -> Any:
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        pkl = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if not pkl:
            raise ConversionError(f"{path}: zip file without data.pkl: not a PyTorch checkpoint")
        root = pkl[0][: -len("data.pkl")]
        archive = _Archive(path, zf, root)
        if f"{root}byteorder" in names:
            info = zf.getinfo(f"{root}byteorder")
            raw = zf.open(info).read(16) if info.file_size <= 16 else b""
            archive.byteorder = raw.decode("ascii", "replace").strip()
            if archive.byteorder not in ("little", "big"):
                raise ConversionError(f"{path}: {root}byteorder is {raw[:16]!r}")
        info = zf.getinfo(pkl[0])
        if info.file_size > MAX_PICKLE_BYTES:
            raise ConversionError(
                f"{path}: {pkl[0]} declares {info.file_size} bytes, over the "
                f"{MAX_PICKLE_BYTES}-byte limit for a checkpoint's pickle"
            )
        archive.charge(info.file_size, info, pkl[0], tensor=False)
        with zf.open(info) as f:
            payload = f.read(MAX_PICKLE_BYTES + 1)
        unpickler = SafeUnpickler(io.BytesIO(payload), archive.storage, torchscript, str(path))
        return unpickler.load()


def pickle_head(path: str | Path, limit: int = 1 << 20) -> bytes:
    """At most `limit` bytes of a torch zip's data.pkl, for detection (b"" when there is none,
    the zip is corrupt, or the entry would inflate past MAX_INFLATE_RATIO x the file size)."""
    path = Path(path)
    try:
        if not path.is_file() or not zipfile.is_zipfile(path):
            return b""
        with zipfile.ZipFile(path) as zf:
            pkl = [i for i in zf.infolist() if i.filename.endswith("data.pkl")]
            if not pkl:
                return b""
            info = pkl[0]
            ratio_ok = info.file_size <= MAX_INFLATE_RATIO * max(path.stat().st_size, 1)
            if info.compress_type != zipfile.ZIP_STORED and not ratio_ok:
                return b""
            with zf.open(info) as f:
                return f.read(limit)
    except Exception:  # a detector peeking: anything unreadable is simply not a match
        return b""


def load_torch_checkpoint(path: str | Path, torchscript: bool = False) -> Any:
    """Load a `torch.save` (zip) file into plain Python containers of numpy arrays.

    Every tensor view is checked against its storage before it is built, storages are read
    lazily and only as far as a view reaches, and the bytes read are capped (see `max_bytes`,
    MAX_INFLATE_RATIO). Legacy (pre-1.6, non-zip) files get the same checks. Raises
    ConversionError naming the file for anything that is not a PyTorch checkpoint and any
    malformed content;
    UnsafePickleError for a global outside the allow-list.
    """
    path = Path(path)
    if not path.exists():
        raise ConversionError(f"{path}: no such file")
    if not path.is_file():
        raise ConversionError(f"{path}: not a regular file")
    if zipfile.is_zipfile(path):
        reader, kind = _read_zip, "PyTorch checkpoint"
    else:
        with open(path, "rb") as f:
            head = f.read(2)
        if head[:1] != b"\x80":
            raise ConversionError(f"{path}: not a PyTorch checkpoint (not a zip archive)")
        from ._torch_legacy import read_legacy

        reader, kind = read_legacy, "legacy PyTorch checkpoint"
    try:
        return reader(path, torchscript)
    except (ConversionError, UnsafePickleError) as exc:
        if str(exc).startswith(str(path)):
            raise
        raise type(exc)(f"{path}: {exc}") from None
    except Exception as exc:  # anything a hostile file provokes becomes one clear line
        msg = str(exc).splitlines()[0][:200] if str(exc) else ""
        raise ConversionError(f"{path}: corrupt {kind} ({type(exc).__name__}: {msg})") from exc


def flatten_state_dict(obj: Any, prefix: str = "") -> dict[str, np.ndarray]:
    """Nested dicts of arrays -> {'a.b.c': array} (keys joined by '.')."""
    out: dict[str, np.ndarray] = {}
    if isinstance(obj, np.ndarray):
        out[prefix.rstrip(".")] = obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            out.update(flatten_state_dict(v, f"{prefix}{k}."))
    return out
