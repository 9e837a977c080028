"""Legacy (pre-1.6, `_use_new_zipfile_serialization=False`) PyTorch checkpoints, read without
torch and without running pickled code: a few pickles back to back, then each storage's raw
bytes (resemblyzer's `pretrained.pt` is one). The object's pickle goes through torch_pickle's
allow-list (`SafeUnpickler`) and every tensor view is checked as for a zip checkpoint; the
entry point is `torch_pickle.load_torch_checkpoint`.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConversionError, UnsafePickleError
from .torch_pickle import SafeUnpickler, _Archive, _decode, _Storage, max_bytes

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # torch.serialization.MAGIC_NUMBER
LEGACY_PROTOCOL = 1001


class _PlainUnpickler(pickle.Unpickler):
    """For a legacy file's header pickles (magic number, protocol, sys_info): no globals."""

    def find_class(self, module: str, name: str):
        raise UnsafePickleError(f"refusing pickled global '{module}.{name}' in a legacy header")


class _FileStorage(_Storage):
    """A legacy file's storage: `numel` elements at byte `offset` of the file, read lazily."""

    def __init__(self, archive: _LegacyArchive, key: str, dtype: Any, numel: int, offset: int):
        self.archive, self.key, self.dtype = archive, key, dtype
        self.np_dtype = np.dtype(np.uint16 if isinstance(dtype, str) else dtype)
        self.itemsize = self.np_dtype.itemsize
        self.name = f"storage {key}"
        self.numel, self.offset = numel, offset
        self._data = None

    def elements(self, n: int) -> np.ndarray:
        if self._data is None or len(self._data) < n:
            nbytes = n * self.itemsize
            self.archive.charge(nbytes, None, self.name)
            with open(self.archive.path, "rb") as f:
                f.seek(self.offset)
                raw = f.read(nbytes)
            if len(raw) != nbytes:
                raise ConversionError(
                    f"{self.archive.path}: {self.name}: truncated ({len(raw)} of {nbytes} bytes)"
                )
            self._data = _decode(raw, self.dtype, self.np_dtype, "little")
        return self._data


class _LegacyArchive(_Archive):
    """A legacy file's byte budget (the same caps as a zip's) and its storages' places."""

    def __init__(self, path: Path):
        self.path, self.root, self.byteorder = path, "", "little"
        self.limit = max_bytes()
        self.read_bytes = self.inflated = self.out_bytes = 0
        self.inflate_limit = 0
        self.spans: dict[str, tuple[int, int]] = {}  # key -> (byte offset, elements)
        self.storages: dict[str, _Storage] = {}

    def storage(self, key: str, dtype: Any, numel: Any) -> _Storage:
        if key not in self.storages:
            if key not in self.spans:
                raise ConversionError(f"{self.path}: storage {key!r} missing from the file")
            offset, count = self.spans[key]
            if count != numel:
                raise ConversionError(
                    f"{self.path}: storage {key!r}: the pickle declares {numel!r} elements, "
                    f"the file holds {count}"
                )
            self.storages[key] = _FileStorage(self, key, dtype, count, offset)
        st = self.storages[key]
        if st.dtype != dtype:
            raise ConversionError(f"{self.path}: storage {key!r} is used with two dtypes")
        return st


def read_legacy(path: Path, torchscript: bool) -> Any:
    """Five pickles back to back (magic number, protocol, sys_info, the object, the sorted
    storage keys), then each storage as an int64 element count and its raw bytes. The dtypes
    are named only inside the object's pickle, so it is read twice through the same allow-list:
    first building nothing, to learn each storage's dtype and where the storages start; then
    for real, each tensor view checked against its storage as in a zip."""
    size = path.stat().st_size
    archive = _LegacyArchive(path)
    with open(path, "rb") as f:
        if _PlainUnpickler(f).load() != LEGACY_MAGIC:
            raise ConversionError(
                f"{path}: not a PyTorch checkpoint (a pickle without torch's legacy magic number)"
            )
        if (proto := _PlainUnpickler(f).load()) != LEGACY_PROTOCOL:
            raise ConversionError(f"{path}: unsupported legacy torch protocol {proto!r}")
        info = _PlainUnpickler(f).load()
        if isinstance(info, dict) and not info.get("little_endian", True):
            raise ConversionError(f"{path}: big-endian legacy checkpoints are not supported")
        obj_at = f.tell()
        seen: dict[str, Any] = {}

        def record(key: str, dtype: Any, _numel: Any) -> None:
            seen[key] = dtype

        SafeUnpickler(f, record, torchscript, str(path), dry=True).load()
        keys = _PlainUnpickler(f).load()
        if not isinstance(keys, list):
            raise ConversionError(f"{path}: legacy checkpoint without a valid storage key list")
        for key in map(str, keys):
            raw = f.read(8)
            if len(raw) != 8 or key not in seen:
                raise ConversionError(f"{path}: storage {key!r} is truncated or unused")
            count = int(np.frombuffer(raw, dtype="<i8")[0])
            itemsize = 2 if isinstance(seen[key], str) else np.dtype(seen[key]).itemsize
            if count < 0 or f.tell() + count * itemsize > size:
                raise ConversionError(
                    f"{path}: storage {key!r} declares {count} elements, beyond the file's end"
                )
            archive.spans[key] = (f.tell(), count)
            f.seek(count * itemsize, 1)
        f.seek(obj_at)
        return SafeUnpickler(f, archive.storage, torchscript, str(path)).load()
