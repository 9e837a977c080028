"""Read a CTranslate2 `model.bin` (binary version 6 and older) into numpy arrays, no ctranslate2.

Layout (ctranslate2 `specs/model_spec.py`, `_serialize`): uint32 binary version, string spec name,
uint32 revision, uint32 variable count, then per variable: string name, uint8 rank, uint32 dims,
uint8 dtype id, uint32 byte count, raw little-endian data; then uint32 alias count and
(alias, target) string pairs. Strings are uint16 length (including a trailing NUL) + UTF-8 bytes.
A `model.bin` split into `model.bin.part1`, `model.bin.part2`... is read as their concatenation.
"""

from __future__ import annotations

import io
import math
import struct
from pathlib import Path

import numpy as np

from ..errors import ConversionError
from ..weights_io import inside

# ctranslate2 DataType enum
DTYPES = {
    0: np.float32,
    1: np.int8,
    2: np.int16,
    3: np.int32,
    4: np.float16,
    5: "bfloat16",
    6: np.float64,
}


def model_bin_parts(folder: Path) -> list[Path]:
    """The file(s) holding model.bin: itself, or its numbered parts in order."""
    whole = folder / "model.bin"
    if whole.exists():
        return [whole]
    parts = sorted(folder.glob("model.bin.part*"), key=lambda p: int(p.suffix[5:] or 0))
    expected = [f"model.bin.part{i}" for i in range(1, len(parts) + 1)]
    if [p.name for p in parts] != expected:
        raise ConversionError(
            f"{folder}: model.bin parts are not consecutive: "
            f"expected {expected}, found {[p.name for p in parts]}"
        )
    return parts


class _Reader:
    def __init__(self, data: bytes, where: str):
        self.f = io.BytesIO(data)
        self.where = where

    def read(self, fmt: str):
        size = struct.calcsize(fmt)
        raw = self.f.read(size)
        if len(raw) != size:
            raise ConversionError(f"{self.where}: truncated CTranslate2 model.bin")
        return struct.unpack("<" + fmt, raw)

    def string(self) -> str:
        (n,) = self.read("H")
        raw = self.f.read(n)
        if len(raw) != n:
            raise ConversionError(f"{self.where}: truncated CTranslate2 model.bin")
        try:
            return raw[:-1].decode("utf-8")
        except UnicodeDecodeError:
            raise ConversionError(f"{self.where}: a name is not UTF-8: {raw[:40]!r}") from None


def read_spec_name(folder: Path) -> str | None:
    """The spec name (e.g. 'WhisperSpec') from the header, or None if unreadable."""
    try:
        parts = model_bin_parts(folder)
        if not parts:
            return None
        with open(parts[0], "rb") as f:
            head = f.read(512)
        r = _Reader(head, str(parts[0]))
        (version,) = r.read("I")
        return r.string() if 1 <= version <= 6 else None
    except (ConversionError, OSError, UnicodeDecodeError):
        return None


def read_model_bin(folder: Path) -> tuple[str, dict[str, np.ndarray]]:
    """Return (spec name, {variable name: array}) with aliases resolved."""
    parts = model_bin_parts(folder)
    if not parts:
        raise ConversionError(f"{folder}: no model.bin (or model.bin.part1...)")
    for p in parts:  # a symlink out of the folder is refused like any other copied/read file
        if not inside(p, folder, "a symlink", ConversionError).is_file():
            raise ConversionError(f"{p}: not a regular file")
    data = b"".join(p.read_bytes() for p in parts)
    r = _Reader(data, str(folder / "model.bin"))
    (version,) = r.read("I")
    if not 1 <= version <= 6:
        raise ConversionError(
            f"{folder}/model.bin: unsupported CTranslate2 binary version {version} (expected 1..6)"
        )
    spec = r.string() if version >= 2 else ""
    if version >= 3:
        r.read("I")  # revision
    (n,) = r.read("I")
    out: dict[str, np.ndarray] = {}
    for _ in range(n):
        name = r.string()
        (rank,) = r.read("B")
        shape = r.read("I" * rank) if rank else ()
        if version >= 4:
            (dtype_id,) = r.read("B")
            (nbytes,) = r.read("I")
        else:
            (item,) = r.read("B")
            dtype_id = {4: 0, 1: 1, 2: 2}.get(item, 0)
            nbytes = int(np.prod(shape)) * item
        dt = DTYPES.get(dtype_id)
        if dt is None:
            raise ConversionError(f"{folder}/model.bin: {name}: unknown dtype id {dtype_id}")
        itemsize = 2 if isinstance(dt, str) else np.dtype(dt).itemsize
        if nbytes != math.prod(shape) * itemsize:
            raise ConversionError(
                f"{folder}/model.bin: {name}: shape {list(shape)} needs "
                f"{math.prod(shape) * itemsize} bytes, the file says {nbytes}"
            )
        raw = r.f.read(nbytes)
        if len(raw) != nbytes:
            raise ConversionError(f"{folder}/model.bin: truncated at variable {name!r}")
        if isinstance(dt, str):
            arr = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            arr = np.frombuffer(raw, np.dtype(dt).newbyteorder("<"))
        out[name] = arr.reshape(shape)
    if version >= 5:
        (n_alias,) = r.read("I")
        for _ in range(n_alias):
            alias, target = r.string(), r.string()
            if target not in out:
                raise ConversionError(f"{folder}/model.bin: alias {alias!r} -> unknown {target!r}")
            out[alias] = out[target]
    return spec, out
