"""Truncation checks from container headers: libsndfile silently shrinks the frame count of a
file cut short (WAV, RF64, W64, AIFF/AIFC, AU, Ogg), so a cut file would be read as a shorter
one. Each check compares what the header declares with what the file holds, reading only
headers (a bounded chunk walk) or, for Ogg, the file's last 64 KB; FLAC, whose STREAMINFO frame
count libsndfile keeps, is checked by decoding its last frames.
"""

from __future__ import annotations

import struct
from pathlib import Path

import soundfile as sf

_UNKNOWN_SIZES = (0, 0x7FFFFFFF, 0xFFFFFFFF)  # sizes streaming writers leave in a header
_MAX_CHUNKS = 1000  # chunks walked before the audio data; bounded for hostile files
_AU_BYTES = {1: 1, 2: 1, 3: 2, 4: 3, 5: 4, 6: 4, 7: 8, 27: 1}  # AU encoding -> bytes/sample
_OGG_TAIL = 65536 + 27 + 255  # the last Ogg page starts within this many bytes of the end
TAIL_FRAMES = 256  # frames decoded at the end of a FLAC file


def _message(kind: str, declared: int, held: int) -> str:
    return (
        f"truncated: the {kind} header declares {declared} bytes of audio data, "
        f"the file holds {max(0, held)}"
    )


def _riff(f, size: int, head: bytes) -> str | None:
    """RIFF/RIFX/RF64/BW64 WAVE: the 'data' chunk (or ds64's data size) against the file."""
    endian = ">" if head[:4] == b"RIFX" else "<"
    pos, align, ds64 = 12, 1, None
    for _ in range(_MAX_CHUNKS):
        f.seek(pos)
        hdr = f.read(8)
        if len(hdr) < 8:
            return None
        cid, (n,) = hdr[:4], struct.unpack(endian + "I", hdr[4:])
        if cid == b"ds64":
            body = f.read(16)
            if len(body) == 16:
                ds64 = struct.unpack("<Q", body[8:16])[0]
        elif cid == b"fmt ":
            fmt = f.read(16)
            if len(fmt) == 16:
                align = max(1, struct.unpack(endian + "H", fmt[12:14])[0])
        elif cid == b"data":
            if n == 0xFFFFFFFF and ds64 is not None:
                n = ds64
            elif n in _UNKNOWN_SIZES:
                return None
            held = size - (pos + 8)
            return None if n - held < align else _message("WAV", n, held)
        pos += 8 + n + (n & 1)
    return None


def _aiff(f, size: int) -> str | None:
    """AIFF/AIFC: the 'SSND' chunk's declared sample bytes against the file."""
    pos, align = 12, 1
    for _ in range(_MAX_CHUNKS):
        f.seek(pos)
        hdr = f.read(8)
        if len(hdr) < 8:
            return None
        cid, (n,) = hdr[:4], struct.unpack(">I", hdr[4:])
        if cid == b"COMM":
            comm = f.read(8)
            if len(comm) == 8:
                channels, _frames, bits = struct.unpack(">hIh", comm)
                align = max(1, channels) * max(1, (bits + 7) // 8)
        elif cid == b"SSND":
            if n in _UNKNOWN_SIZES or n < 8:
                return None
            offset = struct.unpack(">I", (f.read(4) + bytes(4))[:4])[0]
            declared, held = n - 8 - offset, size - (pos + 16 + offset)
            return None if declared - held < align else _message("AIFF", declared, held)
        pos += 8 + n + (n & 1)
    return None


def _w64(f, size: int) -> str | None:
    """Sony Wave64: 16-byte GUID chunk ids, 64-bit sizes that include the 24-byte header."""
    pos, align = 40, 1
    for _ in range(_MAX_CHUNKS):
        f.seek(pos)
        hdr = f.read(24)
        if len(hdr) < 24:
            return None
        cid, (n,) = hdr[:4], struct.unpack("<Q", hdr[16:])
        if n < 24:
            return None
        if cid == b"fmt ":
            fmt = f.read(16)
            if len(fmt) == 16:
                align = max(1, struct.unpack("<H", fmt[12:14])[0])
        elif cid == b"data":
            declared, held = n - 24, size - (pos + 24)
            return None if declared - held < align else _message("W64", declared, held)
        pos += (n + 7) & ~7
    return None


def _au(f, size: int, head: bytes) -> str | None:
    """Sun/NeXT AU: the header's data size against the bytes after its data offset."""
    rest = f.read(8)
    if len(head) < 16 or len(rest) < 8:
        return None
    offset, n, encoding = struct.unpack(">III", head[4:16])
    channels = struct.unpack(">I", rest[4:8])[0]
    if n in _UNKNOWN_SIZES:
        return None
    align = max(1, min(channels, 1024)) * _AU_BYTES.get(encoding, 1)
    held = size - offset
    return None if n - held < align else _message("AU", n, held)


def _ogg(f, size: int) -> str | None:
    """Ogg (Vorbis, Opus, FLAC-in-Ogg): the last page must carry the end-of-stream flag."""
    f.seek(max(0, size - _OGG_TAIL))
    tail = f.read()
    at = tail.rfind(b"OggS")
    if at < 0 or at + 6 > len(tail):
        return "truncated: no complete Ogg page at the end of the file"
    if not tail[at + 5] & 0x04:
        return "truncated: the Ogg stream has no end-of-stream page (the file was cut short)"
    return None


def container_truncation(path: str | Path, size: int) -> str | None:
    """A message when the file's container header declares more audio than the file holds
    (WAV/RF64/BW64, W64, AIFF/AIFC, AU) or an Ogg stream lacks its end page; else None
    (other formats, unknown sizes, or headers too broken to say: libsndfile judges those)."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
            if head[:4] in (b"RIFF", b"RIFX", b"RF64", b"BW64") and head[8:12] == b"WAVE":
                return _riff(f, size, head)
            if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
                return _aiff(f, size)
            if head[:4] == b"riff" and head[4:16] == bytes.fromhex("2e91cf11a5d628db04c10000"):
                return _w64(f, size)
            if head[:4] == b".snd":
                return _au(f, size, head)
            if head[:4] == b"OggS":
                return _ogg(f, size)
    except (OSError, struct.error):
        return None
    return None


def tail_missing(path: str | Path, info: sf._SoundFileInfo) -> str | None:
    """For FLAC (the STREAMINFO frame count survives a cut): a message when the last frames
    it declares cannot be decoded; else None. Costs a seek and TAIL_FRAMES frames."""
    if info.format != "FLAC" or info.frames <= 0:
        return None
    n = min(info.frames, TAIL_FRAMES)
    try:
        with sf.SoundFile(str(path)) as f:
            f.seek(info.frames - n)
            got = f.read(n, dtype="float32", always_2d=True).shape[0]
    except Exception:  # libsndfile: "Internal psf_fseek() failed" past the cut
        got = 0
    if got < n:
        return (
            f"truncated: the FLAC header declares {info.frames} frames, the file ends "
            f"before the last {n} of them"
        )
    return None
