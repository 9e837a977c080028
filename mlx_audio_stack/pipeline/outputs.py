"""A run's files: events.jsonl, speakers/<id>.txt, <name>.rttm, <name>.srt, <name>.vtt,
report.md and timeline.png (when matplotlib is installed). Each is written to a temporary file
and renamed into place, so a kill leaves the old file or the complete new one."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

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
    """Speaker turns and overlaps on one time axis; False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    spk = list(res.transcripts) or sorted({s for s, _, _ in res.turns})
    fig, ax = plt.subplots(figsize=(10, 1 + 0.5 * max(1, len(spk))))
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
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=100)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        Path(tmp).unlink(missing_ok=True)
    return True


def write_outputs(res, out_dir: str | Path, name: str = "meeting") -> Path:
    """Write every output file of a run into `out_dir`; returns the folder."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    record = res.events
    if not isinstance(record, EventRecord):
        record = EventRecord()
        record.extend(res.events)
    record.commit(out / "events.jsonl")  # a spool (events written as decided) is renamed
    for s, text in res.transcripts.items():
        write_atomic(out / "speakers" / f"{s}.txt", text + "\n")
    write_atomic(out / f"{name}.rttm", rttm(res.turns, name))
    write_atomic(out / f"{name}.srt", srt(res.words))
    write_atomic(out / f"{name}.vtt", vtt(res.words))
    write_atomic(out / "report.md", report(res, name))
    timeline_png(res, out / "timeline.png")
    return out
