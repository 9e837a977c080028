"""Byte-exact writers for tools/make_hostile_corpus.py: a tiny pickle emitter and torch zips,
safetensors, CTranslate2 model.bin and WAV files (standard library only, deterministic)."""

from __future__ import annotations

import json
import math
import struct
import wave
import zipfile
from pathlib import Path

DATE = (1980, 1, 1, 0, 0, 0)  # fixed zip timestamps: the corpus is byte-identical run to run
FLOATS4 = struct.pack("<4f", 1, 2, 3, 4)


# ---------------------------------------------------------------- a tiny pickle emitter
class G:
    """A pickled global (module.name)."""

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name


class Call:
    """REDUCE: func(*args)."""

    def __init__(self, func, args: tuple):
        self.func, self.args = func, args


class Pid:
    """A persistent id (torch's storage references)."""

    def __init__(self, value: tuple):
        self.value = value


class RawOps:
    """Opcodes written as they are."""

    def __init__(self, data: bytes):
        self.data = data


def _emit(obj, out: bytearray) -> None:
    if obj is None:
        out += b"N"
    elif obj is True or obj is False:
        out += b"\x88" if obj else b"\x89"
    elif isinstance(obj, int):
        if 0 <= obj < 256:
            out += b"K" + bytes([obj])
        elif -(2**31) <= obj < 2**31:
            out += b"J" + struct.pack("<i", obj)
        else:
            n = (obj.bit_length() + 8) // 8
            out += b"\x8a" + bytes([n]) + obj.to_bytes(n, "little", signed=True)
    elif isinstance(obj, float):
        out += b"G" + struct.pack(">d", obj)
    elif isinstance(obj, str):
        b = obj.encode()
        out += b"X" + struct.pack("<I", len(b)) + b
    elif isinstance(obj, tuple):
        out += b"("
        for x in obj:
            _emit(x, out)
        out += b"t"
    elif isinstance(obj, list):
        out += b"]("
        for x in obj:
            _emit(x, out)
        out += b"e"
    elif isinstance(obj, dict):
        out += b"}("
        for k, v in obj.items():
            _emit(k, out)
            _emit(v, out)
        out += b"u"
    elif isinstance(obj, G):
        out += b"c" + obj.module.encode() + b"\n" + obj.name.encode() + b"\n"
    elif isinstance(obj, Call):
        _emit(obj.func, out)
        _emit(obj.args, out)
        out += b"R"
    elif isinstance(obj, Pid):
        _emit(obj.value, out)
        out += b"Q"
    elif isinstance(obj, RawOps):
        out += obj.data
    else:
        raise TypeError(type(obj))


def dumps(obj) -> bytes:
    out = bytearray(b"\x80\x02")
    _emit(obj, out)
    return bytes(out + b".")


def tensor(key="0", numel=4, offset=0, size=(4,), stride=(1,), storage="FloatStorage"):
    """torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...), as torch.save."""
    pid = Pid(("storage", G("torch", storage), key, "cpu", numel))
    od = Call(G("collections", "OrderedDict"), ())
    return Call(G("torch._utils", "_rebuild_tensor_v2"), (pid, offset, size, stride, False, od))


def torch_zip(path: Path, obj, storages: dict[str, bytes], deflate: set[str] = frozenset()):
    entries = {"archive/data.pkl": obj if isinstance(obj, bytes) else dumps(obj)}
    entries["archive/byteorder"] = b"little"
    for k, v in storages.items():
        entries[f"archive/data/{k}"] = v
    entries["archive/version"] = b"3\n"
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries.items():
            info = zipfile.ZipInfo(name, DATE)
            info.compress_type = zipfile.ZIP_DEFLATED if name in deflate else zipfile.ZIP_STORED
            zf.writestr(info, data, compresslevel=9 if name in deflate else None)


def st_bytes(header: dict | bytes | str, data: bytes = b"", length: int | None = None) -> bytes:
    h = (
        header
        if isinstance(header, bytes)
        else (header.encode() if isinstance(header, str) else json.dumps(header).encode())
    )
    return struct.pack("<Q", len(h) if length is None else length) + h + data


def f32(n: int) -> bytes:
    return struct.pack(f"<{n}f", *([0.5] * n))


def ct2_bin(
    variables: list[tuple[str, tuple, int, bytes]],
    version: int = 6,
    aliases=(),
    spec: str = "WhisperSpec",
    nbytes_fix: dict | None = None,
) -> bytes:
    def s(x: str) -> bytes:
        b = x.encode() + b"\0"
        return struct.pack("<H", len(b)) + b

    out = struct.pack("<I", version) + s(spec) + struct.pack("<I", 1)
    out += struct.pack("<I", len(variables))
    for name, shape, dtype_id, data in variables:
        out += s(name) + struct.pack("<B", len(shape)) + struct.pack(f"<{len(shape)}I", *shape)
        nb = (nbytes_fix or {}).get(name, len(data))
        out += struct.pack("<B", dtype_id) + struct.pack("<I", nb) + data
    out += struct.pack("<I", len(aliases))
    for a, t in aliases:
        out += s(a) + s(t)
    return out


def wav(path: Path, seconds: float = 1.0, sr: int = 16000) -> None:
    n = int(seconds * sr)
    frames = b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * 220 * i / sr))) for i in range(n)
    )
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(frames)
