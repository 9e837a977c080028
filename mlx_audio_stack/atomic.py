"""Temp-then-rename writes that leave nothing behind.

Every output goes to a hidden sibling named after the final name and the writing process,
`.<name>.tmp-<pid>-<random>`, and is renamed into place when complete. What is left behind:
- an exception, Ctrl-C (SIGINT), SIGTERM or SIGHUP: nothing; the CLI turns SIGTERM/SIGHUP into
  `Terminated` (a KeyboardInterrupt) so the same cleanup runs as for Ctrl-C;
- SIGKILL (or a power cut): the temp file/folder stays until the next write into the same
  output location, which removes every `.<name>.tmp-<pid>-*` whose process no longer exists
  (a pid reused by a live process keeps its files until that process ends).
Replacing an existing folder renames it to `.<name>.old-<pid>` first; a kill between the two
renames is repaired by the next write (the old folder is put back when the new one is missing).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import MasError

TERMINATING = (signal.SIGTERM, signal.SIGHUP)
_STALE = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|old)-(?P<pid>\d+)(?:-.*)?$")


class Terminated(KeyboardInterrupt):
    """SIGTERM/SIGHUP received: unwinds like Ctrl-C so temporary outputs are removed."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_terminated(signum: int, _frame) -> None:
    # a second signal while cleaning up is ignored: the first one's unwinding finishes the job
    for s in TERMINATING:
        signal.signal(s, signal.SIG_IGN)
    raise Terminated(signum)


def install_signal_handlers() -> None:
    """Make SIGTERM and SIGHUP raise `Terminated` (main thread only; a no-op elsewhere)."""
    with contextlib.suppress(ValueError):  # not the main thread
        for s in TERMINATING:
            if signal.getsignal(s) is not signal.SIG_IGN:  # keep nohup's choice
                signal.signal(s, _raise_terminated)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM/SIGHUP for a few renames that must happen together."""
    sigs = {signal.SIGINT, *TERMINATING}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def pid_alive(pid: int) -> bool:
    """True when a process `pid` exists (ours, or another user's)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        p.unlink(missing_ok=True)


def remove_stale(final: str | Path) -> list[Path]:
    """Remove the temp files/folders that dead processes left for `final`; put back an old
    folder whose replacement was interrupted. Returns what was removed."""
    final = Path(final)
    folder = final.parent
    if not folder.is_dir():
        return []
    removed = []
    for p in sorted(folder.iterdir()):
        m = _STALE.match(p.name)
        if m is None or m["name"] != final.name:
            continue
        pid = int(m["pid"])
        if pid == os.getpid() or pid_alive(pid):
            continue
        if m["kind"] == "old" and not final.exists() and not final.is_symlink():
            p.rename(final)  # killed between the two renames: the old output comes back
            continue
        _remove(p)
        removed.append(p)
    return removed


def temp_path(final: str | Path, directory: bool = False) -> Path:
    """A fresh temp sibling of `final` (a folder when `directory`), after removing stale ones."""
    final = Path(final)
    if final.is_dir() and not final.is_symlink() and not directory:
        raise MasError(f"{final}: is a folder; give a file name for the output")
    if directory and (final.is_symlink() or (final.exists() and not final.is_dir())):
        raise MasError(f"{final}: exists and is not a folder; it is left as it is")
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        remove_stale(final)
        prefix = f".{final.name}.tmp-{os.getpid()}-"
        if directory:
            tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=final.parent))
        else:
            fd, name = tempfile.mkstemp(prefix=prefix, dir=final.parent)
            os.close(fd)
            tmp = Path(name)
    except OSError as exc:
        raise MasError(f"{final}: cannot write there ({exc.strerror or exc})") from None
    tmp.chmod(umask_mode(directory))  # mkstemp/mkdtemp make it private; outputs are not
    return tmp


def umask_mode(directory: bool) -> int:
    """The mode a plain open()/mkdir() would give under the user's umask."""
    mask = os.umask(0o022)
    os.umask(mask)
    return (0o777 if directory else 0o666) & ~mask


def stream_temp_name(final: str | Path) -> Path:
    """The temp name a streaming writer opens itself (`.<name>.tmp-<pid>-w`), stale ones
    removed first."""
    final = Path(final)
    remove_stale(final)
    return final.with_name(f".{final.name}.tmp-{os.getpid()}-w")


def replace(tmp: str | Path, final: str | Path) -> Path:
    """Move the complete `tmp` into place as `final` (a file or a folder; an existing folder
    is swapped out and removed), with signals held so the swap is not cut in half."""
    tmp, final = Path(tmp), Path(final)
    with signals_deferred():
        if tmp.is_dir() and final.is_dir() and not final.is_symlink():
            old = final.with_name(f".{final.name}.old-{os.getpid()}")
            final.rename(old)
            tmp.rename(final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    return final


@contextlib.contextmanager
def atomic_output(final: str | Path, directory: bool = False) -> Iterator[Path]:
    """`with atomic_output(out) as tmp:` write `tmp`; it becomes `out` on success and is
    removed on any exception (including Ctrl-C and `Terminated`)."""
    tmp = temp_path(final, directory)
    try:
        yield tmp
        replace(tmp, final)
    except BaseException:
        _remove(tmp)
        raise
