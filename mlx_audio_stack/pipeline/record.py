"""Every event a run decided, in order: kept in memory, or spooled to a file as it is decided.

A run's transcript grows with the meeting: an hour of one speaker talking kept ~0.13 MB of
event dicts per audio minute in memory (final and partial events with their words; measured
with tracemalloc on tools/make_meetings.py's hour-long meeting). Spooled (`EventRecord(path)`),
each event is written as one JSON line when it is decided and nothing of it stays in memory;
the file is read back when the run's outputs are written. `mas pipeline` spools into the
output folder under a temporary name (`.events.jsonl.tmp-<pid>-w`) that becomes
`events.jsonl` when the outputs are complete.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

from .. import atomic
from ..errors import MasError


def event_line(event: dict) -> str:
    """One event as the JSON line events.jsonl and live stdout carry (without the newline)."""
    return json.dumps(event, ensure_ascii=False)


class EventRecord:
    """An append-only list of events: in memory (`path=None`) or as JSON lines in `path`
    (created; an existing file there is replaced). Iterating reads the events back in order."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else None
        self.made_folder: Path | None = None  # a folder made for the spool (see discard)
        self._mem: list[dict] = []
        self._n = 0
        self._f = None
        if self.path is not None:
            try:
                self._f = open(self.path, "w", encoding="utf-8")  # noqa: SIM115 (kept open)
            except OSError as exc:
                raise MasError(f"{self.path}: cannot write the event record ({exc})") from None

    @property
    def spooled(self) -> bool:
        return self.path is not None

    def extend(self, events: Iterable[dict]) -> None:
        if self._f is None:
            if self.path is not None:
                raise MasError(f"{self.path}: the event record is closed")
            self._mem.extend(events)
            self._n = len(self._mem)
            return
        lines = [event_line(e) + "\n" for e in events]
        if lines:
            self._f.write("".join(lines))
            self._f.flush()  # a live reader (tail -f) sees each decision as it is made
            self._n += len(lines)

    def __len__(self) -> int:
        return self._n

    def __iter__(self) -> Iterator[dict]:
        if self.path is None:
            yield from self._mem
            return
        if self._f is not None:
            self._f.flush()
        with open(self.path, encoding="utf-8") as f:
            for line in f:
                yield json.loads(line)

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None

    def stage(self, final: str | Path) -> Path:
        """The complete record as a temporary sibling of `final` (events.jsonl), ready to be
        renamed into place (alone by `commit`, or with a run's other outputs): the spool itself
        when it is one, else a copy."""
        final = Path(final)
        self.close()
        if (
            self.path is not None
            and self.path.parent.resolve() == final.parent.resolve()
            and self.path.name.startswith(f".{final.name}.tmp-")
        ):
            return self.path
        tmp = atomic.temp_path(final)
        try:
            if self.path is None:
                with open(tmp, "w", encoding="utf-8") as f:
                    f.writelines(event_line(e) + "\n" for e in self._mem)
            else:
                shutil.copyfile(self.path, tmp)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return tmp

    def committed(self, final: str | Path) -> None:
        """The staged record is now `final`: iterating reads it from there."""
        if self.path is not None:
            self.path = Path(final)

    def commit(self, final: str | Path) -> Path:
        """Put the complete record in place as `final` (events.jsonl): renamed when it is a
        temporary sibling of `final`, else copied through a temporary file. A spooled record
        then reads from `final`."""
        final = Path(final)
        if self.path is not None and self.path.resolve() == final.resolve():
            self.close()
            return final
        atomic.replace(self.stage(final), final)
        self.committed(final)
        return final

    def discard(self) -> None:
        """Remove a spool that will not be committed (the run failed), and the folder made
        for it when nothing else is in it. A committed record is left alone."""
        self.close()
        if self.path is None or not self.path.name.startswith("."):
            return
        self.path.unlink(missing_ok=True)
        if self.made_folder is not None:
            with contextlib.suppress(OSError):  # not empty: other outputs stay
                self.made_folder.rmdir()


def spool_for(out_dir: str | Path) -> EventRecord:
    """A spooled record under the temporary name of `out_dir`/events.jsonl, the folder made if
    missing (a failed run's `discard` removes both; a kill leaves the spool for the next run
    into that folder to remove, as every temporary output)."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise MasError(f"{out}: exists and is not a folder")
    made = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MasError(f"{out}: cannot write there ({exc.strerror or exc})") from None
    rec = EventRecord(atomic.stream_temp_name(out / "events.jsonl"))
    rec.made_folder = out if made else None
    return rec
