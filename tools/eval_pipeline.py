#!/usr/bin/env python
"""Evaluate the multi-speaker pipeline (issue 18) and write reports/pipeline.md + .json.

    python tools/make_meetings.py --out /tmp/mas_meetings --set default --long --hour
    python tools/eval_pipeline.py --meetings /tmp/mas_meetings \
        [--names 'm2spk*' ...] [--modes system vad vad+sep vad+sep+spk sep+spk] \
        [--source-wer] [--ami [N]] [--single [N]] [--memory hour1spk... --memory-minutes M] \
        [--whisper weights/whisper-tiny.en] [--overlap HEADS] [--dry-run]

Every run (one meeting in one mode, one AMI clip, the single-speaker set, ...) happens in a
fresh child process (its own peak memory, a crash costs one row) and its row is saved to
reports/pipeline.json as soon as it is measured; the report is rewritten from all saved rows,
so the evaluation can run in pieces. Modes replace stages by the truth: `vad` the reference
speech regions, `sep` the true reverberated sources (separation and overlap counting), `spk`
the reference speaker of each piece. `--dry-run` scores the references themselves as the
hypothesis (every error must be 0: a check of the harness, written to a separate file).

Metrics (tools/_meeting_metrics.py): cpWER, tcpWER (meeteval), DER, JER (pyannote.metrics,
collar 0, overlap scored), overlap-detection precision/recall, speaker-count error, first- and
final-word latency, RTF per stage, peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tools")]

from _pipeline_jobs import JOBS, MODES, reference_result, score  # noqa: E402, F401
from _pipeline_report import commit  # noqa: E402


def run_child(job: dict, timeout: float) -> dict:
    """Run one job in a fresh interpreter; its row, or {"error": ...}."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = Path(f.name)
    cmd = [sys.executable, __file__, "--job", json.dumps(job), "--job-out", str(out)]
    import resource

    t0 = time.perf_counter()
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
        if p.returncode < 0:  # the last line it printed is no reason
            return {"error": [f"killed by signal {-p.returncode}"]}
        if p.returncode != 0 or not out.stat().st_size:
            return {"error": (p.stderr or p.stdout).strip().splitlines()[-1:] or ["failed"]}
        row = json.loads(out.read_text())
    except subprocess.TimeoutExpired:
        return {"error": [f"timed out after {timeout:.0f} s"]}
    finally:
        out.unlink(missing_ok=True)
    row["child_wall_s"] = round(time.perf_counter() - t0, 1)
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    # CPU seconds of the whole child (imports and model loading included): on a shared machine
    # a steadier cost figure than wall time
    row["child_cpu_s"] = round(r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime, 1)
    row["loadavg"] = [round(x, 1) for x in os.getloadavg()]  # this machine is shared
    row["commit"] = commit()  # rows of one report may come from different code
    return row


def save(db_path: Path, section: str, key: str, row: dict) -> dict:
    """Add one row to the JSON file (locked: several evaluations may run at once)."""
    import fcntl

    with open(db_path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        db = json.loads(db_path.read_text()) if db_path.exists() else {}
        old = db.get(section, {}).get(key)
        if "error" in row and old and "error" not in old:
            key += "|failed"  # a failed rerun keeps the last good row
        db.setdefault(section, {})[key] = row
        tmp = db_path.with_suffix(f".json.tmp{os.getpid()}")
        tmp.write_text(json.dumps(db, indent=1, default=_jsonable) + "\n")
        tmp.replace(db_path)
    return db


def _jsonable(x):
    import numpy as np

    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    return str(x)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--meetings", type=Path, default=Path("/tmp/mas_meetings"))
    ap.add_argument("--names", nargs="*", default=["m*"], help="meeting folder globs")
    ap.add_argument("--modes", nargs="*", default=["system", "vad", "vad+sep", "vad+sep+spk"])
    ap.add_argument("--source-wer", action="store_true", help="plain WER of every true source")
    ap.add_argument("--ami", type=int, nargs="?", const=10, default=0, help="first N AMI clips")
    ap.add_argument(
        "--single",
        type=int,
        nargs="?",
        const=0,
        default=None,
        help="single-speaker proof on the first N utterances (0: all)",
    )
    ap.add_argument("--memory", help="a long input (tools/make_meetings.py --hour) for RSS")
    ap.add_argument("--memory-minutes", type=float, default=60.0)
    ap.add_argument("--whisper", default=None, help="Whisper weights (default: the pipeline's)")
    ap.add_argument("--embedder", default=None, help="embedder weights, or none (default: auto)")
    ap.add_argument(
        "--separator",
        default=None,
        help="separator weights, none, or random[:S] (random weights, cost only)",
    )
    ap.add_argument(
        "--overlap", default=None, help="overlap detector: trained heads folder, or none"
    )
    ap.add_argument(
        "--alone",
        action="store_true",
        help="nothing else runs on this machine: the rows are kept apart as speed figures",
    )
    ap.add_argument("--timeout", type=float, default=1800.0, help="per child run, seconds")
    ap.add_argument("--dry-run", action="store_true", help="score the references themselves")
    ap.add_argument("--out", type=Path, default=ROOT / "reports" / "pipeline.md")
    ap.add_argument("--scope", help="a sentence on what this evaluation covered (kept in the json)")
    ap.add_argument("--job", help=argparse.SUPPRESS)
    ap.add_argument("--job-out", help=argparse.SUPPRESS)
    a = ap.parse_args()
    import mlx_audio_stack  # noqa: F401  (fast BLAS before MLX)

    if a.job:  # child
        job = json.loads(a.job)
        row = JOBS[job["kind"]](job)
        Path(a.job_out).write_text(json.dumps(row, default=_jsonable))
        return 0

    from _pipeline_report import write_report

    from mlx_audio_stack.paths import data_dir

    if a.dry_run and a.out == ROOT / "reports" / "pipeline.md":
        a.out = Path(tempfile.gettempdir()) / "pipeline_dryrun.md"
    db_path = a.out.with_suffix(".json")
    base = {
        "whisper": a.whisper,
        "embedder": a.embedder,
        "separator": a.separator,
        "overlap": a.overlap,
        "dry_run": a.dry_run,
    }
    jobs: list[tuple[str, str, dict]] = []
    # rows with a random-weight separator (cost only) never replace a row of the same mode
    tag = "|random-sep" if str(a.separator or "").startswith("random") else ""
    tag += "|alone" if a.alone else ""  # speed rows never replace a row run beside others
    folders = sorted({p for g in a.names for p in a.meetings.glob(g) if (p / "meta.json").exists()})
    for folder in folders:
        for mode in a.modes:
            if MODES[mode][1] and not (folder / "sources.npy").exists():
                continue
            jobs.append(
                (
                    "meetings",
                    f"{folder.name}|{mode}{tag}",
                    {**base, "kind": "meeting", "path": str(folder), "mode": mode},
                )
            )
        if a.source_wer and (folder / "sources.npy").exists():
            jobs.append(
                ("source_wer", folder.name, {**base, "kind": "source_wer", "path": str(folder)})
            )
    data = data_dir()
    if a.ami:
        if data is None:
            raise SystemExit("shared data not found: set MAS_DATA_DIR")
        for i in range(a.ami):
            jobs.append(
                (
                    "ami",
                    f"trn{i:02d}" + (f"|{Path(a.overlap).name}" if a.overlap else "") + tag,
                    {
                        **base,
                        "kind": "ami",
                        "clip": f"trn{i:02d}",
                        "path": str(data / "ami_meeting_clips"),
                    },
                )
            )
    if a.single is not None:
        jobs.append(
            ("single", "librispeech", {**base, "kind": "single", "limit": a.single or None})
        )
    if a.memory:
        every = max(10.0, a.memory_minutes * 60 / 30)
        jobs.append(
            (
                "memory",
                Path(a.memory).name,
                {
                    **base,
                    "kind": "memory",
                    "path": a.memory,
                    "minutes": a.memory_minutes,
                    "every_s": every,
                },
            )
        )
    if a.scope:
        save(db_path, "scope", "text", {"text": a.scope})
    import shlex

    cmd = "python tools/eval_pipeline.py " + shlex.join(sys.argv[1:])
    for i, (section, key, job) in enumerate(jobs):
        row = run_child(job, a.timeout)
        row["command"] = cmd
        if a.alone:
            row["alone"] = True
        row["finished"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        db = save(db_path, section, key, row)
        brief = row.get("error") or {k: row[k] for k in ("cpwer", "diarization", "rtf") if k in row}
        print(
            f"[{i + 1}/{len(jobs)}] {section} {key}: {json.dumps(brief)[:300]}",
            file=sys.stderr,
            flush=True,
        )
        write_report(db, a.out)
    if not jobs:
        write_report(json.loads(db_path.read_text()) if db_path.exists() else {}, a.out)
    print(f"wrote {a.out} and {db_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TQDM_DISABLE", "1")
    raise SystemExit(main())
