"""What binds a QA verdict to the audio it vouches for, and what makes it unforgeable.

Fingerprint of a file: its stat identity (device, inode, size, mtime, ctime) and a sha256 of
(size, first 16 KiB, last 16 KiB) ("partial"); a --deep run adds the sha256 of the whole file.
The gate stats every file: one whose identity is unchanged has not been written since (ctime
moves on every write and on every utime, and cannot be set back), so nothing is read; any
other file (replaced, edited, copied or moved elsewhere) must match the partial hash, and for
a deep verdict the full sha256. verify="full" reads every file.

Authentication: each stored verdict carries an HMAC-SHA256 over its fields (which include a
digest of the fingerprint table) under a per-user secret key: $MAS_QA_KEY_FILE, else
~/.config/mlx-audio-stack/qa.key, created on first use with 32 random bytes, mode 0600. A
verdict edited by hand, written from scratch, or signed with another user's key fails the
check and reads as "unchecked". The key guards against edits by other people and tools, not
by its owner (who can always pass an explicit override reason).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..errors import MasError

PART_BYTES = 16384  # bytes hashed at each end of a file for the partial hash
KEY_BYTES = 32


class VerdictFileError(MasError):
    """A stored QA verdict file cannot be read as one (bad JSON, wrong types)."""


def partial_hash(path: str, size: int) -> str:
    """sha256 of the size and the first and last PART_BYTES of a file (all of a small one)."""
    h = hashlib.sha256(b"%d:" % size)
    fd = os.open(path, os.O_RDONLY)
    try:  # pread on a raw descriptor: a fifth cheaper than a buffered file object
        if size <= 2 * PART_BYTES:
            h.update(os.pread(fd, 2 * PART_BYTES, 0))
        else:
            h.update(os.pread(fd, PART_BYTES, 0))
            h.update(os.pread(fd, PART_BYTES, size - PART_BYTES))
    finally:
        os.close(fd)
    return h.hexdigest()


def full_hash(path: str) -> str:
    """sha256 of a whole file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


STAT_KEYS = ("dev", "ino", "size", "mtime_ns", "ctime_ns")  # a file's identity in stat()


def _identity(st: os.stat_result) -> dict:
    return {
        "dev": st.st_dev,
        "ino": st.st_ino,
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "ctime_ns": st.st_ctime_ns,
    }


def fingerprint(path: str, deep: bool = False) -> dict:
    """{dev, ino, size, mtime_ns, ctime_ns, partial[, sha256]} of a regular file (OSError
    otherwise)."""
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise OSError(f"{path}: not a regular file")
    fp = {**_identity(st), "partial": partial_hash(path, st.st_size)}
    if deep:
        fp["sha256"] = full_hash(path)
    return fp


def merge_fingerprints(old: dict, new: dict) -> dict:
    """The table of a new run (`new`, keyed by the manifest's audio strings), keeping the full
    sha256 an earlier deep run took of a file whose size, mtime and partial hash are unchanged
    (so a cheap run of another task does not invalidate a deep verdict)."""
    out = {}
    for a, fp in new.items():
        fp = dict(fp)
        prev = old.get(a)
        if "sha256" not in fp and isinstance(prev, dict) and "sha256" in prev:
            if all(prev.get(k) == fp.get(k) for k in (*STAT_KEYS, "partial")):
                fp["sha256"] = prev["sha256"]
        out[a] = fp
    return out


def files_digest(files: dict, deep: bool) -> str:
    """sha256 of the table a verdict relies on (stat identity, partial hash; sha256 only for a
    deep one): signed with the verdict, so the table cannot be edited to fit a changed file."""
    keys = (*STAT_KEYS, "partial", "sha256") if deep else (*STAT_KEYS, "partial")
    rows = [[a, *(files[a].get(k) for k in keys)] for a in sorted(files)]
    return hashlib.sha256(_canonical(rows)).hexdigest()


# ---------------------------------------------------------------------------- the key
def key_path() -> Path:
    """$MAS_QA_KEY_FILE, else ~/.config/mlx-audio-stack/qa.key."""
    env = os.environ.get("MAS_QA_KEY_FILE")
    return Path(env) if env else Path.home() / ".config" / "mlx-audio-stack" / "qa.key"


_KEYS: dict[str, bytes] = {}


def qa_key() -> bytes:
    """The user's QA signing key, created (0600, 32 random bytes) on first use."""
    path = key_path()
    cached = _KEYS.get(str(path))
    if cached is not None:
        return cached
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    except OSError as exc:
        raise MasError(
            f"{path}: cannot create the QA signing key ({exc.strerror}); "
            "set MAS_QA_KEY_FILE to a writable path"
        ) from None
    else:
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(KEY_BYTES))
    try:
        key = path.read_bytes()
    except OSError as exc:
        raise MasError(f"{path}: cannot read the QA signing key ({exc.strerror})") from None
    if len(key) < KEY_BYTES:
        raise MasError(
            f"{path}: QA signing key too short ({len(key)} bytes, need {KEY_BYTES}); "
            "delete it to have a new one made (stored verdicts then read as unchecked)"
        )
    _KEYS[str(path)] = key
    return key


def _canonical(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def sign(entry: dict) -> str:
    """HMAC-SHA256 (hex) of a verdict's fields, 'hmac' itself excluded."""
    body = {k: v for k, v in entry.items() if k != "hmac"}
    return hmac.new(qa_key(), _canonical(body), hashlib.sha256).hexdigest()


def verify_entry(entry: dict) -> bool:
    """Whether a stored verdict carries a valid signature under this user's key."""
    mac = entry.get("hmac")
    return isinstance(mac, str) and hmac.compare_digest(mac, sign(entry))


# ---------------------------------------------------------------------------- gate time
def _stat_check(path: str, fp: dict, full: bool) -> tuple[str | None, bool]:
    """(problem, needs a hash) of one file from stat() alone. Same stat identity (device,
    inode, size, mtime and ctime, which no user can set back) as when checked: unchanged."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return f"{path}: missing (deleted or moved)", False
    except OSError as exc:
        return f"{path}: cannot access ({exc.strerror})", False
    if not stat.S_ISREG(st.st_mode):
        return f"{path}: no longer a regular file", False
    if st.st_size != fp.get("size"):
        return f"{path}: size {st.st_size} bytes, was {fp.get('size')}", False
    return None, full or _identity(st) != {k: fp.get(k) for k in STAT_KEYS}


def _hash_check(path: str, fp: dict, deep: bool) -> str | None:
    """A file whose identity changed: its partial hash, and for a deep verdict its full
    sha256, must match."""
    try:
        if partial_hash(path, fp["size"]) != fp.get("partial"):
            return f"{path}: content differs from the checked file (same size)"
        if deep and "sha256" in fp and full_hash(path) != fp["sha256"]:
            return f"{path}: content differs from the checked file (sha256)"
    except OSError as exc:
        return f"{path}: unreadable ({exc.strerror})"
    return None


def verify_files(
    manifest: str | Path, files: dict, entry: dict, verify: str = "partial"
) -> str | None:
    """None when every file still matches the verdict's fingerprints, else a message naming
    the first file that does not (and how many others). `verify`: 'partial' (stat every
    file, hash the changed ones) or 'full' (hash every file)."""
    if verify not in ("partial", "full"):
        raise ValueError(f"verify: expected 'partial' or 'full', got {verify!r}")
    if files_digest(files, bool(entry.get("deep"))) != entry.get("files_digest"):
        return (
            "the verdict's fingerprint table no longer matches it (edited, or rewritten by a "
            "later QA run of another task on changed files): run the suite again"
        )
    base = os.path.dirname(os.path.realpath(manifest))
    deep, full = bool(entry.get("deep")), verify == "full"
    problems, to_hash = [], []
    for a in sorted(files):
        p = a if os.path.isabs(a) else os.path.normpath(os.path.join(base, a))
        problem, need = _stat_check(p, files[a], full)
        if problem:
            problems.append(problem)
        elif need:
            to_hash.append((p, files[a]))
    if len(to_hash) > 64:  # reads and hashing release the GIL: overlap them
        with ThreadPoolExecutor(8) as ex:
            hashed = list(ex.map(lambda j: _hash_check(j[0], j[1], deep), to_hash))
    else:
        hashed = [_hash_check(p, fp, deep) for p, fp in to_hash]
    problems += [p for p in hashed if p]
    if not problems:
        return None
    more = f" (and {len(problems) - 1} more files)" if len(problems) > 1 else ""
    return problems[0] + more
