"""A run's files: events.jsonl, speakers/<id>.txt, <name>.rttm, <name>.srt, <name>.vtt,
report.md and timeline.png (when matplotlib is installed). They are written complete under
temporary names and put in place as one group (`write_outputs`), so a kill leaves the old
outputs or the complete new ones."""

from __future__ import annotations

import shutil
from pathlib import Path

from .. import atomic
from ..errors import MasError
from ..formats import timestamp, write_atomic
from .record import EventRecord

CUE_MAX_S = 6.0  # a caption cue is cut at this length
CUE_MAX_WORDS = 14
CUE_GAP_S = 1.0  # or at a pause this long


def rttm(turns, uri: str) -> str:
    uri = uri.replace(" ", "_") or "meeting"
    return "".join(
        f"SPEAKER {uri} 1 {a:.3f} {b - a:.3f} <NA> <NA> {s} <NA> <NA>\n" for s, a, b in turns
    )


def cues(words: list[dict]) -> list[tuple[float, float, str]]:
    """Speaker-labelled caption cues from final words (each speaker's words in time order)."""
    out = []
    cur: list[dict] = []

    def close():
        if cur:
            text = " ".join(w["word"] for w in cur)
            out.append((cur[0]["start"], cur[-1]["end"], f"[{cur[0]['speaker']}] {text}"))

    for w in sorted(words, key=lambda w: (w["start"], w["speaker"])):
        if cur and (
            w["speaker"] != cur[-1]["speaker"]
            or w["start"] - cur[-1]["end"] > CUE_GAP_S
            or w["end"] - cur[0]["start"] > CUE_MAX_S
            or len(cur) >= CUE_MAX_WORDS
        ):
            close()
            cur = []
        cur.append(w)
    close()
    return out


def srt(words: list[dict]) -> str:
    return "\n".join(
        f"{i}\n{timestamp(a, ',')} --> {timestamp(b, ',')}\n{t}\n"
        for i, (a, b, t) in enumerate(cues(words), start=1)
    )


def vtt(words: list[dict]) -> str:
    return "WEBVTT\n\n" + "\n".join(
        f"{timestamp(a)} --> {timestamp(b)}\n{t}\n" for a, b, t in cues(words)
    )


def report(res, name: str) -> str:
    st = res.stats
    talk: dict[str, float] = {}
    for s, a, b in res.turns:
        talk[s] = talk.get(s, 0.0) + (b - a)
    lines = [
        f"# Pipeline run: {name}",
        "",
        f"- audio: {st['audio_s']:.1f} s; wall time {st['wall_s']:.1f} s (RTF {st['rtf']}); "
        f"peak RSS {st['peak_rss_mb']:.0f} MB; {st['decodes']} Whisper decodes",
        "- components: " + ", ".join(f"{k} = {v}" for k, v in res.components.items()),
    ]
    lines += [f"- note: {n}" for n in res.notes]
    lines += ["", "| speaker | talk time (s) | words | transcript |", "|---|---:|---:|---|"]
    for s, text in res.transcripts.items():
        n = len(text.split())
        lines.append(f"| {s} | {talk.get(s, 0.0):.1f} | {n} | {text[:200]} |")
    ov = [e for e in res.events if e["type"] == "overlap"]
    lines += [
        "",
        f"Overlapped pieces: {len(ov)} ({sum(e['end'] - e['start'] for e in ov):.1f} s), "
        f"{sum(e['separated'] for e in ov)} separated.",
        "",
        "| stage | seconds |",
        "|---|---:|",
    ]
    lines += [f"| {k} | {v:.2f} |" for k, v in sorted(st["stage_s"].items())]
    return "\n".join(lines) + "\n"


def timeline_png(res, path: Path) -> bool:
    """Speaker turns and overlaps on one time axis, written to `path`; False when matplotlib
    is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    spk = list(res.transcripts) or sorted({s for s, _, _ in res.turns})
    fig, ax = plt.subplots(figsize=(10, 1 + 0.5 * max(1, len(spk))))
    try:
        for i, s in enumerate(spk):
            bars = [(a, b - a) for t, a, b in res.turns if t == s]
            ax.broken_barh(bars, (i - 0.4, 0.8), color=f"C{i % 10}")
        for e in res.events:
            if e["type"] == "overlap":
                ax.axvspan(e["start"], e["end"], color="k", alpha=0.15, lw=0)
        ax.set_yticks(range(len(spk)), spk)
        ax.set_xlabel("time (s)")
        ax.set_xlim(0, max(res.stats["audio_s"], 1e-3))
        ax.set_title("speaker turns (grey: overlap detected)")
        fig.tight_layout()
        fig.savefig(path, dpi=100, format="png")
    finally:
        plt.close(fig)
    return True


MANIFEST = ".mas-outputs"  # the files a run wrote, so the next run into the folder can
# remove those it does not write again (another meeting's name.rttm, a timeline.png)
NO_TIMELINE = "timeline.png not written: matplotlib is not installed (pip install matplotlib)"
NAMED = (".rttm", ".srt", ".vtt")  # the outputs named after the meeting


def _previous_outputs(out: Path) -> set[str]:
    """What the folder's manifest says an earlier run wrote that a run may have to remove:
    only timeline.png and whole NAME.rttm/.srt/.vtt trios (report.md and events.jsonl are
    always written again), so a planted or copied manifest cannot remove anything else."""
    try:
        names = set((out / MANIFEST).read_text(encoding="utf-8").split("\n"))
    except (OSError, UnicodeDecodeError):
        return set()
    names = {n for n in names if n and "/" not in n and "\\" not in n and n not in (".", "..")}
    keep = {"timeline.png"} & names
    stems = {n[: -len(k)] for n in names for k in NAMED if n.endswith(k)}
    for stem in stems:
        trio = {stem + k for k in NAMED}
        if stem and trio <= names:
            keep |= trio
    return keep


def _manifest(names: set[str]) -> str:
    return "".join(f"{n}\n" for n in sorted(names))


def write_outputs(res, out_dir: str | Path, name: str = "meeting") -> Path:
    """Write every output file of a run into `out_dir`; returns the folder.

    Each file is written complete under a temporary name first, with signals held while they
    are put in place: the files are renamed together (`atomic.commit_group`: a kill midway is
    finished by the next write there), then speakers/ is swapped in whole (so it holds this
    run's speakers only: a previous run's S3.txt, or anything else in it, goes). The files an
    earlier run into the folder wrote and this one does not (another name's .rttm/.srt/.vtt, a
    timeline.png) are removed, as `.mas-outputs` lists them, so the folder holds one run."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MasError(f"{out}: cannot write there ({exc.strerror or exc})") from None
    record = res.events
    if not isinstance(record, EventRecord):
        record = EventRecord()
        record.extend(res.events)
    temps: list[Path] = []

    def clean_up() -> None:  # every entry is a temporary name; those renamed are gone
        for t in temps:
            if t.is_dir():
                shutil.rmtree(t, ignore_errors=True)
            elif t != record.path:  # a spool stays for the caller (discard / the next run)
                t.unlink(missing_ok=True)

    try:
        png = atomic.temp_path(out / "timeline.png")
        temps.append(png)
        renames = []
        try:
            drawn = timeline_png(res, png)
        except Exception as exc:  # a plot is not worth the run's other outputs
            drawn = False
            res.notes.append(f"timeline.png not written: {type(exc).__name__}: {exc}")
        if drawn:
            renames.append((png, out / "timeline.png"))
        elif not any("timeline.png" in n for n in res.notes):  # not said yet (why it failed)
            res.notes.append(NO_TIMELINE)
        texts = {
            f"{name}.rttm": rttm(res.turns, name),
            f"{name}.srt": srt(res.words),
            f"{name}.vtt": vtt(res.words),
            "report.md": report(res, name),
        }
        for fname, text in texts.items():
            tmp = atomic.temp_path(out / fname)
            temps.append(tmp)
            tmp.write_text(text, encoding="utf-8")
            renames.append((tmp, out / fname))
        events = record.stage(out / "events.jsonl")
        temps.append(events)
        renames.append((events, out / "events.jsonl"))
        speakers = atomic.temp_path(out / "speakers", directory=True)
        temps.append(speakers)
        for s, text in res.transcripts.items():
            (speakers / f"{s}.txt").write_text(text + "\n", encoding="utf-8")
        written = {f.name for _, f in renames}
        previous = _previous_outputs(out)
        with atomic.signals_deferred():
            # the manifest names both sets until the old ones are gone: a process killed in
            # between leaves them to the next run into the folder
            write_atomic(out / MANIFEST, _manifest(previous | written))
            atomic.commit_group(renames)
            record.committed(out / "events.jsonl")
            atomic.replace(speakers, out / "speakers")
            for stale in sorted(previous - written):
                (out / stale).unlink(missing_ok=True)
            write_atomic(out / MANIFEST, _manifest(written))
    except BaseException:
        clean_up()
        raise
    clean_up()  # the timeline's temp when none was drawn
    return out
