"""Meeting metrics for the pipeline evaluation (issue 18), computed by the field's libraries:
cpWER and tcpWER by meeteval, DER and JER by pyannote.metrics (collar 0, overlap scored),
overlap-detection precision/recall by pyannote.metrics' detection metric (time-based, on the
regions where two or more speakers talk). This module only converts our data to their inputs
and reads their results; text is normalised first with openai-whisper's EnglishTextNormalizer,
as tools/eval_whisper.py does.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from pathlib import Path

import numpy as np

TCP_COLLAR_S = 5.0  # meeteval's / CHiME-8's tcpWER collar

Turn = tuple[str, float, float]  # (speaker, start_s, end_s)


# ---------------------------------------------------------------------------- text


_NORMALIZER = None


def normalize(text: str) -> str:
    """openai-whisper's EnglishTextNormalizer (the one tools/eval_whisper.py scores with)."""
    global _NORMALIZER
    if _NORMALIZER is None:
        from whisper.normalizers import EnglishTextNormalizer

        _NORMALIZER = EnglishTextNormalizer()
    return " ".join(_NORMALIZER(text).split())


def wer(refs: list[str], hyps: list[str]) -> dict:
    """Corpus WER (jiwer) over (reference, hypothesis) pairs after normalisation: errors/words."""
    import jiwer

    pairs = [(normalize(r), normalize(h)) for r, h in zip(refs, hyps)]
    pairs = [(r, h) for r, h in pairs if r]
    if not pairs:
        return {"wer": float("nan"), "errors": 0, "words": 0}
    out = jiwer.process_words([r for r, _ in pairs], [h for _, h in pairs])
    errors = out.substitutions + out.deletions + out.insertions
    words = out.substitutions + out.deletions + out.hits
    return {"wer": errors / words, "errors": errors, "words": words}


# ---------------------------------------------------------------------------- references


def read_rttm(path: str | Path) -> dict[str, list[Turn]]:
    """uri (accent-free) -> [(speaker, start, end)] of every SPEAKER line."""
    from mlx_audio_stack.evaluation.rttm import read_rttm as read_turns

    return {u: [(spk, a, b) for a, b, spk in t] for u, t in read_turns(path).items()}


def load_meeting(folder: str | Path) -> dict:
    """A folder of tools/make_meetings.py: mix path, sources (S, T), turns, SegLST, meta."""
    folder = Path(folder)
    meta = json.loads((folder / "meta.json").read_text())
    src = folder / "sources.npy"
    return {
        "name": meta["name"],
        "mix": folder / "mix.wav",
        "sources": np.load(src) if src.exists() else None,
        "turns": read_rttm(folder / "ref.rttm")[meta["name"]],
        "seglst": json.loads((folder / "ref.seglst.json").read_text()),
        "meta": meta,
    }


def speech_regions(turns: list[Turn]) -> list[tuple[float, float]]:
    """The union of all turns as sorted, merged (start, end) regions (oracle VAD)."""
    regions: list[list[float]] = []
    for _, s, e in sorted(turns, key=lambda t: t[1]):
        if regions and s <= regions[-1][1]:
            regions[-1][1] = max(regions[-1][1], e)
        else:
            regions.append([s, e])
    return [(s, e) for s, e in regions]


def count_frames(turns: list[Turn], frame_s: float, n: int | None = None) -> np.ndarray:
    """(F,) number of speakers talking in each frame (a speaker counts once per frame)."""
    end = max((e for _, _, e in turns), default=0.0)
    n = n if n is not None else int(np.ceil(end / frame_s))
    per: dict[str, np.ndarray] = {}
    for spk, s, e in turns:
        m = per.setdefault(spk, np.zeros(n, bool))
        m[int(round(s / frame_s)) : int(round(e / frame_s))] = True
    return np.sum(list(per.values()), axis=0).astype(np.int64) if per else np.zeros(n, np.int64)


# ---------------------------------------------------------------------------- word error rates


def seglst(session: str, entries: list[dict]) -> list[dict]:
    """SegLST entries (session_id, speaker, start_time, end_time, words) with normalised words."""
    return [
        {
            "session_id": session,
            "speaker": str(e["speaker"]),
            "start_time": float(e["start_time"]),
            "end_time": float(e["end_time"]),
            "words": normalize(e["words"]),
        }
        for e in entries
    ]


def hypothesis_seglst(session: str, events: list[dict], words: list[dict]) -> list[dict]:
    """The pipeline's output as SegLST: one entry per final event (its text, times, speaker);
    without final events, one entry per word of `res.words`."""
    finals = [e for e in events if e.get("type") == "final" and str(e.get("text", "")).strip()]
    if finals:
        rows = [
            {
                "speaker": e["speaker"],
                "start_time": e["start"],
                "end_time": e["end"],
                "words": e["text"],
            }
            for e in finals
        ]
    else:
        rows = [
            {
                "speaker": w["speaker"],
                "start_time": w["start"],
                "end_time": w["end"],
                "words": w["word"],
            }
            for w in words
        ]
    return seglst(session, rows)


def _error_rate_dict(er) -> dict:
    return {
        "error_rate": float(er.error_rate) if er.length else float("nan"),
        "errors": int(er.errors),
        "length": int(er.length),
        "insertions": int(er.insertions),
        "deletions": int(er.deletions),
        "substitutions": int(er.substitutions),
        "missed_speaker": int(er.missed_speaker),
        "falarm_speaker": int(er.falarm_speaker),
        "assignment": [list(map(str, a)) for a in (er.assignment or ())],
    }


def _session(ref: list[dict], hyp: list[dict]) -> tuple:
    from meeteval.io import SegLST

    session = ref[0]["session_id"] if ref else "session"
    # meeteval scores a speaker with no words as missing: keep empty hypotheses out
    hyp = [h for h in hyp if h["words"].strip()]
    return session, SegLST(ref), SegLST(hyp)


def cp_wer(ref: list[dict], hyp: list[dict]) -> dict:
    """Concatenated minimum-permutation WER (meeteval.wer.cpwer) of one session."""
    import meeteval

    session, r, h = _session(ref, hyp)
    return _error_rate_dict(meeteval.wer.cpwer(r, h)[session])


def tcp_wer(ref: list[dict], hyp: list[dict], collar: float = TCP_COLLAR_S) -> dict:
    """Time-constrained cpWER (meeteval.wer.tcpwer, `collar` seconds) of one session."""
    import meeteval

    session, r, h = _session(ref, hyp)
    # meeteval warns when segment length / segment count exceeds the collar (its check for
    # times in samples): references here are whole utterances in seconds, so it is noise
    log = logging.getLogger("preprocess")  # meeteval.wer.preprocess's logger
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        return _error_rate_dict(meeteval.wer.tcpwer(r, h, collar=collar)[session])
    finally:
        log.setLevel(level)


def combine(rates: list[dict]) -> float:
    """Pooled error rate of several sessions: total errors / total reference words."""
    n = sum(r["length"] for r in rates)
    return sum(r["errors"] for r in rates) / n if n else float("nan")


# ---------------------------------------------------------------------------- diarization


def _annotation(turns: list[Turn], uri: str):
    from pyannote.core import Annotation, Segment

    ann = Annotation(uri=uri)
    for i, (spk, s, e) in enumerate(turns):
        if e > s:
            ann[Segment(s, e), i] = str(spk)
    return ann


def _uem(uem: tuple[float, float]):
    from pyannote.core import Segment, Timeline

    return Timeline([Segment(*uem)])


def der_jer(ref: list[Turn], hyp: list[Turn], uem: tuple[float, float]) -> dict:
    """DER and JER (pyannote.metrics, collar 0, overlapped speech scored) with components."""
    from pyannote.metrics.diarization import DiarizationErrorRate, JaccardErrorRate

    r, h, u = _annotation(ref, "s"), _annotation(hyp, "s"), _uem(uem)
    der = DiarizationErrorRate(collar=0.0, skip_overlap=False)
    comp = der(r, h, uem=u, detailed=True)
    jer = JaccardErrorRate(collar=0.0, skip_overlap=False)(r, h, uem=u)
    return {
        "der": float(comp["diarization error rate"]),
        "jer": float(jer),
        "total_s": float(comp["total"]),
        "missed_s": float(comp["missed detection"]),
        "false_alarm_s": float(comp["false alarm"]),
        "confusion_s": float(comp["confusion"]),
    }


def overlap_detection(
    ref: list[Turn], hyp_counts: np.ndarray, frame_s: float, uem: tuple[float, float]
) -> dict:
    """Precision/recall of detected overlap (>= 2 speakers) against the reference overlap, by
    pyannote.metrics' DetectionPrecisionRecallFMeasure on the two overlap timelines."""
    from pyannote.metrics.detection import DetectionPrecisionRecallFMeasure

    n = int(np.ceil(uem[1] / frame_s))
    ref_ov = count_frames(ref, frame_s, n) >= 2
    hyp = np.zeros(n, bool)
    m = min(n, len(hyp_counts))
    hyp[:m] = np.asarray(hyp_counts[:m]) >= 2
    metric = DetectionPrecisionRecallFMeasure(collar=0.0, skip_overlap=False)
    comp = metric(
        _annotation(_frames_to_turns(ref_ov, frame_s), "s"),
        _annotation(_frames_to_turns(hyp, frame_s), "s"),
        uem=_uem(uem),
        detailed=True,
    )
    precision, recall, _ = metric.compute_metrics(detail=comp)
    return {
        "precision": float(precision) if hyp.any() else float("nan"),
        "recall": float(recall) if ref_ov.any() else float("nan"),
        "ref_overlap_s": float(ref_ov.sum() * frame_s),
        "hyp_overlap_s": float(hyp.sum() * frame_s),
    }


def overlap_event_frames(events, frame_s: float, duration_s: float) -> np.ndarray:
    """Frame counts from a run's overlap events: 2 inside each event, 1 elsewhere (for
    `overlap_detection` of what the pipeline decided was overlapped)."""
    n = int(np.ceil(duration_s / frame_s))
    counts = np.ones(n, np.int64)
    for e in events:
        if e["type"] == "overlap":
            counts[int(e["start"] / frame_s) : int(np.ceil(e["end"] / frame_s))] = 2
    return counts


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) frame index runs of True in `mask`."""
    edges = np.flatnonzero(np.diff(np.r_[0, np.asarray(mask).astype(np.int8), 0]))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]


def _frames_to_turns(mask: np.ndarray, frame_s: float, label: str = "overlap") -> list[Turn]:
    return [(label, a * frame_s, b * frame_s) for a, b in runs(mask)]


def speaker_count_error(ref: list[Turn], n_hyp: int) -> int:
    """Signed error of the number of distinct speakers found (hyp - ref)."""
    return int(n_hyp) - len({spk for spk, _, _ in ref})


# ---------------------------------------------------------------------------- latency, cost


def quantiles(values: list[float]) -> dict:
    """Median and 90th percentile (nan when empty)."""
    if not values:
        return {"median": float("nan"), "p90": float("nan"), "n": 0}
    v = np.asarray(values, np.float64)
    return {"median": float(np.median(v)), "p90": float(np.percentile(v, 90)), "n": int(v.size)}


def latencies(events: list[dict], latency: list[tuple[float, float]]) -> dict:
    """final-word latency: emitted_at - word end of every final word (`res.latency`);
    first-word latency: for every final word, the emitted_at of the first event (partial or
    final) of the same speaker that showed a word of the same normalised text within 0.5 s
    of it, minus the word's end."""
    final = [max(0.0, em - end) for end, em in latency]
    shown: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    finals = []
    for ev in sorted(events, key=lambda e: e.get("emitted_at", 0.0)):
        if ev.get("type") not in ("partial", "final"):
            continue
        for w in ev.get("words") or []:
            key = (str(ev.get("speaker")), normalize(str(w.get("word", ""))))
            shown[key].append((float(w.get("end", 0.0)), float(ev.get("emitted_at", 0.0))))
            if ev["type"] == "final":
                finals.append((key, float(w.get("end", 0.0))))
    first = []
    for key, end in finals:
        seen = [em for e, em in shown[key] if abs(e - end) <= 0.5]
        if seen:
            first.append(max(0.0, min(seen) - end))
    return {"final_word": quantiles(final), "first_word": quantiles(first)}


def rtf(stats: dict) -> dict:
    """Real-time factor end to end and per stage (seconds of compute / seconds of audio)."""
    audio = float(stats.get("audio_s") or 0.0)
    if audio <= 0:
        return {}
    out = {"total": float(stats.get("wall_s", 0.0)) / audio}
    out.update({k: float(v) / audio for k, v in (stats.get("stage_s") or {}).items()})
    return out
