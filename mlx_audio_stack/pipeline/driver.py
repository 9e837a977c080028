"""The driver: the one place that knows the order of the stages. File mode and live mode both
feed it chunks (`push`) and end it with `flush`."""

from __future__ import annotations

import resource
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .._blas import release_free_memory
from ..audio import check_finite
from ..errors import AudioError
from .asr import ASRStream, StreamState
from .config import FRAME_S, SAMPLE_RATE, PipelineConfig
from .overlap import split_by_overlap
from .record import EventRecord
from .stages import (
    OracleOverlap,
    OracleSeparator,
    OracleVAD,
    Piece,
    Segmenter,
    VADStage,
)
from .tracker import SpeakerTracker

KEEP_S = 8.0  # mixture audio kept behind the newest sample (pieces close within ~2.5 s)
IDLE_FINAL_S = 2.0  # a speaker silent this long has its last words made final


@dataclass
class PipelineResult:
    """What a run produced (see the package docstring for the event format)."""

    transcripts: dict[str, str]
    words: list[dict]
    turns: list[tuple[str, float, float]]
    events: list[dict] | EventRecord  # EventRecord: spooled (iterable, read back from disk)
    overlap_frames: np.ndarray
    frame_s: float
    stats: dict
    latency: list[tuple[float, float]]
    notes: list[str] = field(default_factory=list)
    components: dict = field(default_factory=dict)


def _mono_float(chunk) -> np.ndarray:
    """A pushed chunk as float32 samples; a chunk of several channels or of integer samples
    is an error (interleaved channels would be read as twice the audio, int16 values as
    samples 32768 times too loud)."""
    a = np.asarray(chunk)
    if a.ndim > 1 and a.size and sorted(a.shape)[-2] > 1:
        raise AudioError(
            f"audio chunk: {a.shape} looks like {min(a.shape)} channels; push() takes mono "
            "samples (mix down first, e.g. chunk.mean(axis=1))"
        )
    if a.dtype.kind not in "f":
        raise AudioError(
            f"audio chunk: {a.dtype} samples; push() takes float samples in [-1, 1] "
            "(int16 PCM: chunk / 32768)"
        )
    return a.astype(np.float32, copy=False).reshape(-1)


class Pipeline:
    """Streaming multi-speaker transcription: `events = p.push(chunk)`, `p.flush()`,
    `p.result()`. Chunks are float32 mono at 16 kHz, any length.

    Components are paths, loaded objects, None (the default weights under weights/) or False
    (stage off). `oracle_*` replace a stage by the truth, for evaluation only. `record` keeps
    the decided events: in memory by default, or spooled to a file (`record.spool_for(out)`)
    so memory does not grow with the length of the input.
    """

    def __init__(
        self,
        whisper=None,
        vad=None,
        embedder=None,
        separator=None,
        overlap=None,
        config: PipelineConfig | None = None,
        oracle_vad: list[tuple[float, float]] | None = None,
        oracle_sources: np.ndarray | None = None,
        oracle_speakers: list[tuple[str, float, float]] | None = None,
        log: Callable[[str], None] | None = None,
        record: EventRecord | None = None,
    ):
        from . import components as comp

        self.cfg = config or PipelineConfig()
        self.log = log or (lambda msg: print(f"mas pipeline: {msg}", file=sys.stderr))
        self.notes: list[str] = []
        self.components: dict[str, str] = {}
        self.stage_s: dict[str, float] = defaultdict(float)
        t0 = time.perf_counter()

        whisper_model = comp.load_whisper(whisper)
        self.components["asr"] = f"whisper {getattr(whisper_model, 'name', '?')}"
        self.asr = ASRStream(whisper_model, self.cfg)
        if oracle_vad is not None:
            self.vad_stage: VADStage = OracleVAD(oracle_vad)
            self.components["vad"] = "oracle"
        else:
            self.vad_model = comp.load_vad(vad)
            self.vad_stage = VADStage(self.vad_model)
            self.components["vad"] = "silero-vad"
        self.oracle_speakers = oracle_speakers
        self.embedder = None
        if oracle_speakers is not None:
            self.components["embedder"] = "oracle speaker ids"
        else:
            self.embedder = comp.load_embedder(embedder, self._note)
            self.components["embedder"] = self.embedder.name if self.embedder else "none"
        # with one id only (no embedder, or --max-speakers 1) separated voices would have no
        # second id to go to (a second source's words were dropped): nothing is separated
        one_id = oracle_speakers is None and (self.embedder is None or self.cfg.max_speakers < 2)
        if oracle_sources is not None:
            oracle_sources = np.asarray(oracle_sources, np.float32)
            self.overlap = OracleOverlap(oracle_sources)
            self.separator = None if one_id else OracleSeparator(oracle_sources)
        else:
            self.overlap = comp.load_overlap(overlap, self._note)
            if one_id and separator is not False:
                why = "no speaker embedder" if self.embedder is None else "--max-speakers 1"
                self._note(f"separation off: with {why} every voice goes to one speaker")
                self.separator = None
            else:
                self.separator = comp.load_separator(separator, self._note)
        self.components["overlap"] = self.overlap.name
        self.components["separation"] = self.separator.name if self.separator else "none"
        threshold = self.cfg.tracker_threshold
        if threshold is None:
            threshold = comp.tracker_threshold(self.embedder)
        self.tracker = SpeakerTracker(
            threshold,
            self.cfg.max_speakers,
            self.cfg.centroid_memory,
            self.cfg.min_new_speaker_s,
            self.cfg.cross_source_margin,
            self.cfg.new_speaker_margin,
        )
        self.segmenter = Segmenter(self.cfg)
        self.stage_s["load"] = time.perf_counter() - t0
        self._reset_state(record if record is not None else EventRecord())

    # --- public ------------------------------------------------------------------------------

    def push(self, chunk: np.ndarray) -> list[dict]:
        """Feed mono float32 samples at 16 kHz; return the events decided by them."""
        if self._closed:
            raise AudioError("push() after flush(): start a new Pipeline")
        x = check_finite(_mono_float(chunk), "audio chunk")
        w0 = time.perf_counter()
        out: list[dict] = []
        self._buf = np.concatenate([self._buf, x])
        self._t += x.size
        with self._timer("vad"):
            self._vs, probs = self.vad_stage.step(self._vs, x)
        with self._timer("overlap"):
            self._os, ov = self.overlap.step(self._os, x)
            self._add_overlap_frames(ov)
        with self._timer("segmentation"):
            self._ss, pieces = self.segmenter.step(self._ss, probs)
        self._pieces += pieces
        covered = (self._ov_first + self._ov_n) * self.overlap.frame_s * SAMPLE_RATE
        while self._pieces and self._pieces[0].end <= covered:
            out += self._handle_piece(self._pieces.pop(0))
        out += self._decode_streams(final=False)
        self._trim_buffer()
        if self._t // (60 * SAMPLE_RATE) > len(self._rss):  # once per audio minute
            release_free_memory()
            self._rss.append((round(self._t / SAMPLE_RATE, 1), round(_rss_mb(), 1)))
        self._wall += time.perf_counter() - w0
        self._events.extend(out)
        return out

    def flush(self) -> list[dict]:
        """End of input: close the open piece, make every stream's text final."""
        if self._closed:
            return []
        w0 = time.perf_counter()
        out: list[dict] = []
        self._vs, probs = self.vad_stage.finish(self._vs)
        self._ss, pieces = self.segmenter.step(self._ss, probs)
        self._ss, last = self.segmenter.finish(self._ss)
        self._os, ov = self.overlap.finish(self._os)
        self._add_overlap_frames(ov)
        for piece in self._pieces + pieces + last:
            out += self._handle_piece(piece)
        self._pieces = []
        out += self._decode_streams(final=True)
        self._closed = True
        self._wall += time.perf_counter() - w0
        self._events.extend(out)
        return out

    def result(self) -> PipelineResult:
        """Everything decided so far (complete after `flush`). With a spooled record, `events`
        is that record (iterable, read back from its file); words and latencies are read from
        its final events."""
        words: list[dict] = []
        latency: list[tuple[float, float]] = []
        for e in self._events:
            if e["type"] == "final":
                for w in e["words"]:
                    words.append({"speaker": e["speaker"], **w})
                    latency.append((w["end"], e["emitted_at"]))
        by_spk: dict[str, list[str]] = defaultdict(list)
        for w in words:
            by_spk[w["speaker"]].append(w["word"])
        transcripts = {s: " ".join(by_spk.get(s, [])) for s in self._speaker_order()}
        counts = np.concatenate(self._ov_counts) if self._ov_counts else np.zeros(0, np.int8)
        audio_s = self._t / SAMPLE_RATE
        stats = {
            "audio_s": round(audio_s, 3),
            "wall_s": round(self._wall, 3),
            "rtf": round(self._wall / audio_s, 4) if audio_s else None,
            "stage_s": {k: round(v, 3) for k, v in self.stage_s.items()},
            "peak_rss_mb": round(_peak_rss_mb(), 1),
            "speakers": len(transcripts),
            "decodes": self._decodes,
            "rss_mb_by_minute": list(self._rss),
        }
        return PipelineResult(
            transcripts=transcripts,
            words=words,
            turns=_merge_turns(self._turns),
            events=self._events if self._events.spooled else list(self._events),
            overlap_frames=counts.astype(np.int64),
            frame_s=getattr(self.overlap, "frame_s", FRAME_S),
            stats=stats,
            latency=latency,
            notes=list(self.notes),
            components=dict(self.components),
        )

    # --- stages ------------------------------------------------------------------------------

    def _reset_state(self, record: EventRecord) -> None:
        self._vs = self.vad_stage.initial_state()
        self._ss = self.segmenter.initial_state()
        self._os = self.overlap.initial_state()
        self._ts = self.tracker.initial_state()
        self._streams: dict[str, StreamState] = {}
        self._pieces: list[Piece] = []  # closed, waiting for the overlap detector's frames
        self._last_sid: str | None = None
        self._last_heard: dict[str, float] = {}
        self._last_routed: str | None = None  # the speaker of the last piece routed
        self._buf = np.zeros(0, np.float32)
        self._buf_start = 0
        self._t = 0
        # detector frames (F, 4) from frame _ov_first on (older ones are dropped with the
        # audio they cover); the counts (argmax) of every frame, for the result
        self._ov: list[np.ndarray] = []
        self._ov_first = 0
        self._ov_n = 0  # frames in _ov
        self._ov_counts: list[np.ndarray] = []
        self._events = record
        self._turns: list[tuple[str, float, float]] = []
        self._wall = 0.0
        self._decodes = 0
        self._rss: list[tuple[float, float]] = []  # (audio s, current RSS MB) each minute
        self._closed = False

    def _handle_piece(self, piece: Piece) -> list[dict]:
        parts = self._split_by_overlap(piece)
        if self.separator is None:
            # nothing to separate: the piece stays whole (a longer piece embeds more reliably)
            # and goes to its dominant speaker; overlap events mark the overlapped runs in it
            return self._handle_part(piece, 1, [(p, c) for p, c in parts if c >= 2])
        out: list[dict] = []
        for part, count in parts:
            out += self._handle_part(part, count)
        return out

    def _handle_part(
        self, piece: Piece, count: int, overlaps: list[tuple[Piece, int]] = ()
    ) -> list[dict]:
        """One part of a piece: separated when `count` >= 2, else embedded, tracked and routed
        whole to one speaker; `overlaps` are overlapped runs inside it that were not separated."""
        audio = self._audio(piece.start, piece.end)
        if audio.size == 0:
            return []
        t0, t1 = piece.start / SAMPLE_RATE, piece.end / SAMPLE_RATE
        out: list[dict] = []
        if count >= 2:
            out += self._separated(piece, audio, count)
            return out
        with self._timer("embedding"):
            sid, new = self._speaker_of(audio, t0, t1)
        if new:
            out.append(self._event("speaker", sid, t0, t1, source="direct"))
        for run, c in overlaps:
            a, b = run.start / SAMPLE_RATE, run.end / SAMPLE_RATE
            out.append(self._overlap_event(a, b, c, [sid], separated=False))
        self._route(sid, audio, t0, "direct")
        return out

    def _separated(self, piece: Piece, audio: np.ndarray, count: int) -> list[dict]:
        ctx = int(self.cfg.separation_context_s * SAMPLE_RATE)
        a = max(piece.start - ctx, self._buf_start)
        b = min(piece.end + ctx, self._t)
        with self._timer("separation"):
            sources = self.separator(self._audio(a, b), a, count)
            sources = sources[:, piece.start - a : piece.end - a]
        t0, t1 = piece.start / SAMPLE_RATE, piece.end / SAMPLE_RATE
        mix_db = _db(audio)
        keep = [i for i, s in enumerate(sources) if _db(s) > mix_db + self.cfg.source_min_rms_db]
        if self.oracle_speakers is None and hasattr(self, "vad_model") and keep:
            with self._timer("vad"):
                keep = [i for i in keep if self._has_speech(sources[i])]
        if not keep:
            # the separator heard no one where the VAD heard speech: the piece is not lost but
            # goes whole to its dominant speaker, as without a separator
            return self._handle_part(piece, 1, [(piece, count)])
        if self.oracle_speakers is None:
            room = max(len(self._ts.ids), self.cfg.max_speakers)
            if len(keep) > room:  # more voices than --max-speakers allows: the loudest stay
                keep = sorted(sorted(keep, key=lambda i: -_db(sources[i]))[:room])
        out: list[dict] = []
        with self._timer("embedding"):
            if self.oracle_speakers is not None:
                labels = sorted({s for s, _, _ in self.oracle_speakers})
                ids = [labels[i] if i < len(labels) else None for i in keep]
                news = [s is not None and s not in self._streams for s in ids]
            else:  # an embedder: without one (one id) nothing is separated
                emb = self.embedder.embed([sources[i] for i in keep], input_sr=SAMPLE_RATE)
                self._ts, ids, news = self.tracker.assign(
                    self._ts, emb, [t1 - t0] * len(keep), distinct=True
                )
        for sid, new, i in zip(ids, news, keep):
            if sid is None:  # a true source without a true speaker id
                continue
            if new:
                out.append(self._event("speaker", sid, t0, t1, source="separated"))
            self._route(sid, sources[i], t0, "separated")
        out.append(self._overlap_event(t0, t1, count, [s for s in ids if s], separated=True))
        return out

    def _speaker_of(self, audio: np.ndarray, t0: float, t1: float) -> tuple[str, bool]:
        if self.oracle_speakers is not None:
            sid = _most_overlapping(self.oracle_speakers, t0, t1) or self._last_sid or "S1"
            self._last_sid = sid
            return sid, sid not in self._streams
        dur = t1 - t0
        if self.embedder is None:
            return "S1", "S1" not in self._streams
        if dur < self.cfg.min_embed_s and self._ts.last is not None:
            return self._ts.last, False
        emb = self.embedder.embed([audio], input_sr=SAMPLE_RATE)
        self._ts, ids, news = self.tracker.assign(self._ts, emb, [dur])
        return ids[0], news[0]

    def _route(self, sid: str, audio: np.ndarray, t0: float, source: str) -> None:
        st = self._streams.get(sid) or self.asr.initial_state(sid)
        self._streams[sid] = self.asr.push(st, audio, t0, source)
        self._turns.append((sid, t0, t0 + audio.size / SAMPLE_RATE))
        self._last_heard[sid] = t0 + audio.size / SAMPLE_RATE
        self._last_routed = sid

    def _decode_streams(self, final: bool) -> list[dict]:
        out: list[dict] = []
        now = self._t / SAMPLE_RATE
        # speech still being cut into a piece (or waiting for the overlap detector) may be the
        # last speaker's next words: that speaker is not idle until it is routed. Finalizing
        # early empties the buffer, and the next piece is then decoded without its context
        # (a 2 s piece after a pause turned "better than" into "But, rather than")
        open_speech = self._ss.in_speech or bool(self._pieces)
        for sid in list(self._streams):
            st = self._streams[sid]
            silent = now - self._last_heard.get(sid, now) >= IDLE_FINAL_S
            idle = silent and not (open_speech and sid == self._last_routed)
            busy = st.pending_s > 0 or st.hypothesis
            if final or (idle and busy):
                if not busy:  # everything it heard is final already
                    continue
                fin = True
            elif self.asr.ready(st):
                fin = False
            else:
                continue
            with self._timer("asr"):
                st, committed, partial = self.asr.decode(st, final=fin)
            self._decodes += 1
            self._streams[sid] = st
            if committed:
                out.append(self._words_event("final", sid, committed))
            if partial and self.cfg.partials:
                out.append(self._words_event("partial", sid, partial))
        return out

    # --- helpers -----------------------------------------------------------------------------

    def _add_overlap_frames(self, ov: np.ndarray) -> None:
        if len(ov):
            self._ov.append(ov)
            self._ov_n += len(ov)
            self._ov_counts.append(np.asarray(ov).argmax(axis=1).astype(np.int8))

    def _ov_frames(self) -> np.ndarray:
        """The detector frames held (from frame `_ov_first` on), joined into one block."""
        if len(self._ov) > 1:
            self._ov = [np.concatenate(self._ov)]
        return self._ov[0]

    def _split_by_overlap(self, piece: Piece) -> list[tuple[Piece, int]]:
        if not self._ov:
            return [(piece, 1)]
        ov = self._ov_frames()
        return split_by_overlap(piece, ov, self.overlap.frame_s, self.cfg, self._ov_first)

    def _has_speech(self, audio: np.ndarray) -> bool:
        from ..models.silero_vad.offline import speech_probs

        p = speech_probs(self.vad_model, audio, SAMPLE_RATE)
        return bool(np.size(p) and np.max(p) >= self.cfg.vad_threshold)

    def _audio(self, a: int, b: int) -> np.ndarray:
        a, b = max(a, self._buf_start), min(b, self._t)
        return self._buf[a - self._buf_start : b - self._buf_start] if b > a else self._buf[:0]

    def _trim_buffer(self) -> None:
        keep_from = self._t - int(KEEP_S * SAMPLE_RATE)
        if self._ss.in_speech:
            keep_from = min(keep_from, self.segmenter.open_start(self._ss))
        if self._pieces:
            ctx = int(self.cfg.separation_context_s * SAMPLE_RATE)
            keep_from = min(keep_from, self._pieces[0].start - ctx)
        drop = keep_from - self._buf_start
        if drop > SAMPLE_RATE:  # trim in >= 1 s steps
            self._buf = self._buf[drop:].copy()
            self._buf_start = keep_from
            # the detector frames of the audio dropped (every piece to come lies after it)
            old = int(keep_from // (self.overlap.frame_s * SAMPLE_RATE)) - 1 - self._ov_first
            if old > 0 and self._ov:
                ov = self._ov_frames()
                old = min(old, len(ov))
                self._ov = [ov[old:]]
                self._ov_first += old
                self._ov_n -= old

    def _speaker_order(self) -> list[str]:
        seen: list[str] = []
        for s, _, _ in self._turns:
            if s not in seen:
                seen.append(s)
        return seen

    def _event(self, kind: str, sid: str, t0: float, t1: float, source: str) -> dict:
        return {
            "type": kind,
            "speaker": sid,
            "start": round(t0, 3),
            "end": round(t1, 3),
            "source": source,
            "emitted_at": self._now(),
        }

    def _overlap_event(self, t0: float, t1: float, count: int, speakers, separated: bool):
        return {
            "type": "overlap",
            "start": round(t0, 3),
            "end": round(t1, 3),
            "count": int(count),
            "speakers": list(speakers),
            "separated": separated,
            "emitted_at": self._now(),
        }

    def _words_event(self, kind: str, sid: str, words: list[dict]) -> dict:
        sources = {w["source"] for w in words}
        return {
            "type": kind,
            "speaker": sid,
            "start": words[0]["start"],
            "end": words[-1]["end"],
            "text": " ".join(w["word"] for w in words),
            "words": words,
            "confidence": round(float(np.mean([w["probability"] for w in words])), 4),
            "source": "separated" if "separated" in sources else "direct",
            "emitted_at": self._now(),
        }

    def _now(self) -> float:
        return round(self._t / SAMPLE_RATE, 3)

    def _note(self, msg: str) -> None:
        self.notes.append(msg)
        self.log(msg)

    def note(self, msg: str) -> None:
        """Add a note to the run (its report and log): what the caller knows of the input."""
        self._note(msg)

    def _timer(self, stage: str):
        return _Timer(self.stage_s, stage)


class _Timer:
    def __init__(self, acc: dict, key: str):
        self.acc, self.key = acc, key

    def __enter__(self):
        self.t = time.perf_counter()

    def __exit__(self, *exc):
        self.acc[self.key] += time.perf_counter() - self.t


def _db(x: np.ndarray) -> float:
    return 10.0 * np.log10(float(np.mean(np.square(x, dtype=np.float64))) + 1e-12)


def _most_overlapping(turns, t0: float, t1: float) -> str | None:
    best, best_ov = None, 0.0
    acc: dict[str, float] = defaultdict(float)
    for spk, a, b in turns:
        ov = min(b, t1) - max(a, t0)
        if ov > 0:
            acc[spk] += ov
    for spk, ov in acc.items():
        if ov > best_ov:
            best, best_ov = spk, ov
    return best


def _merge_turns(turns, gap: float = 0.5) -> list[tuple[str, float, float]]:
    out: list[list] = []
    last: dict[str, list] = {}
    for spk, a, b in sorted(turns, key=lambda t: t[1]):
        cur = last.get(spk)
        if cur is not None and a - cur[2] <= gap:
            cur[2] = max(cur[2], b)
            continue
        cur = [spk, a, b]
        out.append(cur)
        last[spk] = cur
    return [(s, round(a, 3), round(b, 3)) for s, a, b in out]


def _rss_mb() -> float:
    """Current resident memory (Linux /proc; elsewhere the peak, which bounds it)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize() / 2**20
    except OSError:
        return _peak_rss_mb()


def _peak_rss_mb() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / (1024 * 1024) if sys.platform == "darwin" else r / 1024
