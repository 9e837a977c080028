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
Several files that belong together (`mas separate`'s spk1.wav, spk2.wav ...) are committed as
one group (`commit_group`): once all are complete a journal `.mas-commit-<pid>.json` naming the
renames is written, then the renames run and the journal is removed. A kill before the journal
leaves the old set; a kill after it is rolled forward by the next write into that folder, which
so finds the old set or the complete new one, never a mix.
"""

from __future__ import annotations

import contextlib
import json
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
_JOURNAL = re.compile(r"^\.mas-commit-(?P<pid>\d+)\.json(?P<partial>\.tmp)?$")


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
    roll_forward(folder)  # a group commit a kill cut short: finish it before removing temps
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


def _plain(name) -> bool:
    return isinstance(name, str) and name not in ("", ".", "..") and "/" not in name


def _valid(journal: dict) -> bool:
    """A journal as commit_group writes it: plain names in one folder, each rename from the
    final's own temp name, removals only of names shaped like a final (spk3.wav for spk1.wav).
    A planted journal can so touch nothing outside that folder's group."""
    renames, remove = journal["renames"], journal["remove"]
    if not all(isinstance(r, list) and len(r) == 2 and all(map(_plain, r)) for r in renames):
        return False
    if not all(t.startswith(f".{f}.tmp-") and not f.startswith(".") for t, f in renames):
        return False
    shapes = [re.compile(re.sub(r"\d+", r"\\d+", re.escape(f))) for _, f in renames]
    return all(_plain(n) and any(sh.fullmatch(n) for sh in shapes) for n in remove)


def _apply(folder: Path, journal: dict) -> None:
    for name in journal["remove"]:
        (folder / name).unlink(missing_ok=True)
    for tmp, final in journal["renames"]:
        if (folder / tmp).exists():
            os.replace(folder / tmp, folder / final)


def commit_group(renames: list[tuple[Path, Path]], remove: list[Path] = ()) -> None:
    """Move complete temps into place as one group and delete `remove` (an old set's extra
    members), all in one folder: a journal is written first, so a kill during the renames is
    finished by the next write there (`roll_forward`). Signals are held meanwhile."""
    if not renames:
        return
    folder = Path(renames[0][1]).parent
    here = folder.resolve()  # "out" and "/cwd/out" are one folder
    if any(Path(p).parent.resolve() != here for pair in renames for p in pair) or any(
        Path(p).parent.resolve() != here for p in remove
    ):
        raise ValueError("commit_group: every file must be in one folder")
    journal = {
        "renames": [[Path(t).name, Path(f).name] for t, f in renames],
        "remove": [Path(p).name for p in remove],
    }
    for t, _ in renames:  # the temps' data reach the disk before the journal names them
        with open(t, "rb") as fh:
            os.fsync(fh.fileno())
    path = folder / f".mas-commit-{os.getpid()}.json"
    tmp = folder / f".mas-commit-{os.getpid()}.json.tmp"
    with signals_deferred():
        with open(tmp, "w") as fh:
            json.dump(journal, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _apply(folder, journal)
        path.unlink()


def roll_forward(folder: str | Path) -> list[Path]:
    """Finish the group commits that dead processes began in `folder` (their journals name
    complete temps); returns the journals handled. Unreadable journals are removed: the
    renames they would name had not started (the journal is renamed into place whole)."""
    folder = Path(folder)
    done = []
    for p in sorted(folder.glob(".mas-commit-*")):
        m = _JOURNAL.match(p.name)
        if m is None or (int(m["pid"]) != os.getpid() and pid_alive(int(m["pid"]))):
            continue
        if not m["partial"]:  # a journal still being written: its renames had not started
            try:
                journal = json.loads(p.read_text())
                if _valid(journal):
                    _apply(folder, journal)
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                pass  # not a journal commit_group wrote: nothing of ours to finish
        p.unlink(missing_ok=True)
        done.append(p)
    return done


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
