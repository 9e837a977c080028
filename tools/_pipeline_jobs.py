"""The child side of tools/eval_pipeline.py: one job (a meeting in one mode, an AMI clip, the
single-speaker set, plain WER of the true sources, the memory run) measured in its own process
and returned as one row."""

from __future__ import annotations

import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

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
    for key in ("whisper", "embedder", "separator", "overlap"):
        v = job.get(key)
        if v:
            out[key] = False if v == "none" else v
    if str(out.get("separator", "")).startswith("random"):
        out["separator"] = random_separator(int(out["separator"].partition(":")[2] or 2))
    return out


def random_mossformer2(num_spks: int = 2, whamr: bool = False, **dims):
    """Full-size MossFormer2_SS_16K (or its WHAMR! variant; `dims`: other ModelArgs, e.g. a
    tiny one for tests) in the real layout with seeded random weights: cost only, its output
    is noise."""
    import mlx.core as mx
    from mlx.utils import tree_flatten

    from mlx_audio_stack.models.mossformer2 import ModelArgs, MossFormer2

    mx.random.seed(0)
    m = MossFormer2(ModelArgs(num_spks=num_spks, skip_mask_multiplication=whamr, **dims))
    m.load_weights([(k, mx.random.normal(v.shape) * 0.05) for k, v in tree_flatten(m.parameters())])
    mx.eval(m.parameters())
    return m


def random_separator(num_spks: int = 2):
    """random_mossformer2 wrapped as the pipeline's separation stage, named so that the run's
    components say its weights are random."""
    from mlx_audio_stack.pipeline.stages import Separator

    sep = Separator(random_mossformer2(num_spks))
    sep.name = "mossformer2, random weights"
    return sep


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
    for a, b in M.runs(counts >= 2):  # the true overlaps, as the pipeline's overlap events
        events.append({"type": "overlap", "start": a * FRAME_S, "end": b * FRAME_S})
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
        latency=[(w["end"], e["emitted_at"]) for e in events if "words" in e for w in e["words"]],
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
    # what the pipeline treated as overlapped (its overlap events: the detector's threshold
    # and minimum run applied inside speech pieces), not the detector's most likely count
    row["overlap_decision"] = M.overlap_detection(
        ref_turns, M.overlap_event_frames(res.events, res.frame_s, uem[1]), res.frame_s, uem
    )
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
        # each utterance's two hypotheses, to see where the two differ
        "hypotheses": [{"pipeline": a, "transcribe": b} for a, b in zip(hyp_pipe, hyp_plain)],
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
    """Push a long file through a live Pipeline whose events are spooled to a folder, as
    `mas pipeline` does; (audio s, RSS MB, wall s, peak RSS MB) after every `every_s` of
    audio, then the outputs written."""
    import tempfile

    import numpy as np
    import soundfile as sf

    from mlx_audio_stack.pipeline import Pipeline
    from mlx_audio_stack.pipeline.outputs import write_outputs
    from mlx_audio_stack.pipeline.record import spool_for

    with tempfile.TemporaryDirectory(prefix="mas-memory-") as out:
        p = Pipeline(record=spool_for(out), **_components(job))
        rss, pushed, t0 = [(0.0, _rss_mb(), 0.0, _peak_mb())], 0.0, time.perf_counter()
        limit = job["minutes"] * 60.0
        with sf.SoundFile(job["path"]) as f:
            for block in f.blocks(blocksize=8000, dtype="float32"):
                p.push(np.asarray(block, np.float32))
                pushed += block.shape[0] / f.samplerate
                if pushed >= len(rss) * job["every_s"]:
                    wall = round(time.perf_counter() - t0, 1)
                    rss.append((round(pushed, 1), _rss_mb(), wall, _peak_mb()))
                if pushed >= limit:
                    break
        p.flush()
        res = p.result()
        write_outputs(res, out, "memory")
        words = len(res.words)
    return {
        "path": job["path"],
        "audio_s": pushed,
        "rss_mb": rss,
        "stats": res.stats,
        "words": words,
        "peak_after_outputs_mb": _peak_mb(),
    }


def _peak_mb() -> float:
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


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
