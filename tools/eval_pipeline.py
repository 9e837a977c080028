#!/usr/bin/env python
"""Evaluate the multi-speaker pipeline (issue 18) and write reports/pipeline.md + .json.

    python tools/make_meetings.py --out /tmp/mas_meetings --set default --long --hour
    python tools/eval_pipeline.py --meetings /tmp/mas_meetings \
        [--names 'm2spk*' ...] [--modes system vad vad+sep vad+sep+spk sep+spk] \
        [--source-wer] [--ami [N]] [--single [N]] [--memory hour1spk... --memory-minutes M] \
        [--whisper weights/whisper-tiny.en] [--dry-run]

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

MODES = {  # name -> (oracle VAD, oracle sources, oracle speaker ids)
    "system": (False, False, False),
    "vad": (True, False, False),
    "vad+sep": (True, True, False),
    "vad+sep+spk": (True, True, True),
    "sep+spk": (False, True, True),
    "sep": (False, True, False),
}
FRAME_S = 0.032


# ---------------------------------------------------------------------------- child side


def _components(job: dict) -> dict:
    """Component arguments of run_pipeline: a path, "none" (stage off) or the default."""
    out = {}
    for key in ("whisper", "embedder", "separator"):
        v = job.get(key)
        if v:
            out[key] = False if v == "none" else v
    if str(out.get("separator", "")).startswith("random"):
        out["separator"] = random_separator(int(out["separator"].partition(":")[2] or 2))
    return out


def random_separator(num_spks: int = 2):
    """Full-size MossFormer2_SS_16K in the real layout with seeded random weights (cost only:
    its output is noise), wrapped as the pipeline's separation stage."""
    import mlx.core as mx
    from mlx.utils import tree_flatten

    from mlx_audio_stack.models.mossformer2 import ModelArgs, MossFormer2
    from mlx_audio_stack.pipeline.stages import Separator

    mx.random.seed(0)
    m = MossFormer2(ModelArgs(num_spks=num_spks))
    m.load_weights([(k, mx.random.normal(v.shape) * 0.05) for k, v in tree_flatten(m.parameters())])
    mx.eval(m.parameters())
    return Separator(m)


def _run(audio, job: dict, **oracles):
    """run_pipeline, or the reference itself as the hypothesis with --dry-run."""
    if job.get("dry_run"):
        return reference_result(job["reference"], job["duration_s"])
    from mlx_audio_stack.pipeline import run_pipeline

    return run_pipeline(audio, **_components(job), **oracles)


class _Result:
    """The fields of PipelineResult that the metrics read."""

    def __init__(self, **kw):
        self.__dict__.update(kw)


def reference_result(ref: list[dict], duration_s: float) -> _Result:
    """A PipelineResult-like hypothesis made from a SegLST reference (for --dry-run): one final
    event per utterance, word times spread evenly, turns = utterances, no latency."""
    import resource

    import _meeting_metrics as M  # noqa: N812
    import numpy as np

    labels = {s: f"S{i + 1}" for i, s in enumerate(dict.fromkeys(r["speaker"] for r in ref))}
    events, words, turns = [], [], []
    for r in ref:
        sid, a, b = labels[r["speaker"]], r["start_time"], r["end_time"]
        ws = r["words"].split()
        step = (b - a) / max(1, len(ws))
        wl = [
            {"word": w, "start": a + i * step, "end": a + (i + 1) * step, "speaker": sid}
            for i, w in enumerate(ws)
        ]
        events.append(
            {
                "type": "final",
                "speaker": sid,
                "start": a,
                "end": b,
                "text": r["words"],
                "words": wl,
                "emitted_at": b,
            }
        )
        words += wl
        turns.append((sid, a, b))
    counts = M.count_frames(turns, FRAME_S, int(np.ceil(duration_s / FRAME_S)))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    stats = {
        "audio_s": duration_s,
        "wall_s": 0.0,
        "stage_s": {},
        "peak_rss_mb": rss,
        "speakers": len(labels),
    }
    return _Result(
        events=events,
        words=words,
        turns=turns,
        overlap_frames=counts,
        frame_s=FRAME_S,
        stats=stats,
        latency=[(w["end"], e["emitted_at"]) for e in events for w in e["words"]],
        notes=["dry run: the reference is the hypothesis"],
        components={},
    )


def score(res, ref_seglst: list[dict], ref_turns, uem: tuple[float, float], session: str) -> dict:
    """Every metric of one run against its references."""
    import _meeting_metrics as M  # noqa: N812

    row: dict = {}
    if ref_seglst is not None:
        ref = M.seglst(session, ref_seglst)
        hyp = M.hypothesis_seglst(session, res.events, res.words)
        row["cpwer"] = M.cp_wer(ref, hyp)
        row["tcpwer"] = M.tcp_wer(ref, hyp)
    row["diarization"] = M.der_jer(ref_turns, list(res.turns), uem)
    row["overlap_detection"] = M.overlap_detection(ref_turns, res.overlap_frames, res.frame_s, uem)
    n_hyp = len({s for s, _, _ in res.turns})
    row["speakers_ref"] = len({s for s, _, _ in ref_turns})
    row["speakers_hyp"] = n_hyp
    row["speaker_count_error"] = M.speaker_count_error(ref_turns, n_hyp)
    row["latency"] = M.latencies(res.events, res.latency)
    row["rtf"] = M.rtf(
        {
            **res.stats,
            "stage_s": {k: v for k, v in res.stats.get("stage_s", {}).items() if k != "load"},
        }
    )
    row["stats"] = res.stats
    row["notes"] = list(getattr(res, "notes", []))
    row["components"] = dict(getattr(res, "components", {}))
    return row


def job_meeting(job: dict) -> dict:
    import _meeting_metrics as M  # noqa: N812

    m = M.load_meeting(job["path"])
    vad, sep, spk = MODES[job["mode"]]
    oracles = {}
    if vad:
        oracles["oracle_vad"] = M.speech_regions(m["turns"])
    if sep:
        oracles["oracle_sources"] = m["sources"]
    if spk:
        oracles["oracle_speakers"] = list(m["turns"])
    job = {**job, "reference": m["seglst"], "duration_s": m["meta"]["duration_s"]}
    res = _run(str(m["mix"]), job, **oracles)
    row = score(res, m["seglst"], m["turns"], (0.0, m["meta"]["duration_s"]), m["name"])
    meta = m["meta"]
    row.update(
        meeting=m["name"],
        mode=job["mode"],
        n_speakers=len(meta["speakers"]),
        overlap=meta["overlap_requested"],
        snr_db=meta["snr_db"],
        duration_s=meta["duration_s"],
    )
    return row


def job_ami(job: dict) -> dict:
    import _meeting_metrics as M  # noqa: N812

    folder = Path(job["path"])
    from mlx_audio_stack.evaluation.rttm import read_uem

    turns = M.read_rttm(folder / "debug.train.rttm")[job["clip"]]
    uem = read_uem(folder / "debug.train.uem").get(job["clip"], [(0.0, 30.0)])[0]
    ref = [{"speaker": s, "start_time": a, "end_time": b, "words": "x"} for s, a, b in turns]
    job = {**job, "reference": ref, "duration_s": uem[1]}
    res = _run(str(folder / f"{job['clip']}.wav"), job)
    row = score(res, None, turns, uem, job["clip"])
    row.update(clip=job["clip"], mode="system", duration_s=uem[1] - uem[0])
    return row


def job_single(job: dict) -> dict:
    """Pipeline vs plain transcribe() on transcribed LibriSpeech utterances, same weights."""
    import _meeting_metrics as M  # noqa: N812
    from eval_whisper import utterances

    from mlx_audio_stack.models.whisper.load import load_model
    from mlx_audio_stack.models.whisper.transcribe import transcribe
    from mlx_audio_stack.paths import weights_dir

    whisper = load_model(job.get("whisper") or weights_dir() / "whisper-tiny.en")
    utts = utterances(job.get("limit"))
    refs, hyp_pipe, hyp_plain, rtf_pipe, rtf_plain = [], [], [], [], []
    for path, text in utts:
        t0 = time.perf_counter()
        plain = transcribe(str(path), whisper)["text"]
        t1 = time.perf_counter()
        if job.get("dry_run"):
            pipe = text
        else:
            from mlx_audio_stack.pipeline import run_pipeline

            res = run_pipeline(str(path), **{**_components(job), "whisper": whisper})
            pipe = " ".join(w["word"] for w in sorted(res.words, key=lambda w: w["start"]))
        t2 = time.perf_counter()
        refs.append(text)
        hyp_plain.append(plain)
        hyp_pipe.append(pipe)
        rtf_plain.append(t1 - t0)
        rtf_pipe.append(t2 - t1)
    import soundfile as sf

    audio_s = sum(sf.info(str(p)).duration for p, _ in utts)
    return {
        "n": len(utts),
        "audio_s": audio_s,
        "wer_pipeline": M.wer(refs, hyp_pipe),
        "wer_transcribe": M.wer(refs, hyp_plain),
        "rtf_pipeline": sum(rtf_pipe) / audio_s,
        "rtf_transcribe": sum(rtf_plain) / audio_s,
        "utterances": [str(p.name) for p, _ in utts],
    }


def job_source_wer(job: dict) -> dict:
    """Plain transcribe() of each speaker alone in the meeting's room, i.e. their true source
    plus the meeting's noise (mix - sum of sources): the audio the pipeline hears wherever that
    speaker talks alone, vs that speaker's reference text."""
    import _meeting_metrics as M  # noqa: N812
    import soundfile as sf

    from mlx_audio_stack.models.whisper.transcribe import transcribe

    m = M.load_meeting(job["path"])
    mix, _ = sf.read(str(m["mix"]), dtype="float32")
    n = min(mix.size, m["sources"].shape[1])
    alone = m["sources"][:, :n] + (mix[:n] - m["sources"][:, :n].sum(0))[None]
    refs, hyps = [], []
    for k, spk in enumerate(m["meta"]["speakers"]):
        segs = sorted(
            (s for s in m["seglst"] if s["speaker"] == spk), key=lambda s: s["start_time"]
        )
        refs.append(" ".join(s["words"] for s in segs))
        hyps.append(
            refs[-1] if job.get("dry_run") else transcribe(alone[k], job.get("whisper"))["text"]
        )
    return {"meeting": m["name"], "n_speakers": len(refs), **M.wer(refs, hyps)}


def job_memory(job: dict) -> dict:
    """Push a long file through a live Pipeline; RSS after every `every_s` of audio."""
    import numpy as np
    import soundfile as sf

    from mlx_audio_stack.pipeline import Pipeline

    p = Pipeline(**_components(job))
    rss, pushed, t0 = [(0.0, _rss_mb(), 0.0)], 0.0, time.perf_counter()
    limit = job["minutes"] * 60.0
    with sf.SoundFile(job["path"]) as f:
        for block in f.blocks(blocksize=8000, dtype="float32"):
            p.push(np.asarray(block, np.float32))
            pushed += block.shape[0] / f.samplerate
            if pushed >= len(rss) * job["every_s"]:
                rss.append((round(pushed, 1), _rss_mb(), round(time.perf_counter() - t0, 1)))
            if pushed >= limit:
                break
    p.flush()
    res = p.result()
    return {"path": job["path"], "audio_s": pushed, "rss_mb": rss, "stats": res.stats}


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


JOBS = {
    "meeting": job_meeting,
    "ami": job_ami,
    "single": job_single,
    "source_wer": job_source_wer,
    "memory": job_memory,
}


# ---------------------------------------------------------------------------- parent side


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
        "dry_run": a.dry_run,
    }
    jobs: list[tuple[str, str, dict]] = []
    folders = sorted({p for g in a.names for p in a.meetings.glob(g) if (p / "meta.json").exists()})
    for folder in folders:
        for mode in a.modes:
            if MODES[mode][1] and not (folder / "sources.npy").exists():
                continue
            jobs.append(
                (
                    "meetings",
                    f"{folder.name}|{mode}",
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
                    f"trn{i:02d}",
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
