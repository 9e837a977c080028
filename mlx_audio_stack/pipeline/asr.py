"""One speaker's live transcript: a growing audio buffer re-decoded by Whisper, with the
LocalAgreement-2 commit policy of whisper_streaming (Macháček et al., 2023).

Each speaker's speech pieces are appended to that speaker's own *stream* (its audio in the
order it was spoken, the pauses between pieces shortened to `gap_s`); a time map turns stream
times back into meeting times. Every `min_chunk_s` of new audio the whole buffer is decoded
(the committed text that has scrolled out of the buffer is the prompt). A word is final once
two consecutive decodes agree on it and on every word before it, including how they read the
last committed words (`_same_context`): final text never changes. The buffer is trimmed at
the end of the last Whisper segment that is fully committed once it is longer than
`buffer_trim_s`, so memory and decode cost stay bounded; a buffer that reaches
`max_buffer_s` without agreement commits the words heard in its oldest part (`_commit_old`).

Latency: a word is first shown by the decode after its piece reaches the stream (a piece is
handed on once cut, at a 0.25 s pause or after 2 s) and becomes final when the next decode
agrees, after `min_chunk_s` more of *that speaker's* audio. A speaker's stream grows only
while they talk, so the last words of a turn wait for their next turn or for 2 s of silence
(`driver.IDLE_FINAL_S`). Measured in audio time from a word's end (reports/pipeline.md, README):
first shown after ~2 s, final after ~4-5 s (medians), longer when speakers alternate fast.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

import numpy as np

from ..models.whisper.timing import APPEND, PREPEND
from .config import SAMPLE_RATE, PipelineConfig

_NORM = re.compile(r"[^\w']+")
_PUNCT = PREPEND + APPEND + " "  # what openai-whisper's anomaly rule leaves out


def _norm(word: str) -> str:
    return _NORM.sub("", word.lower())


@dataclass(frozen=True)
class Word:
    """A word in stream time (seconds on the speaker's stream)."""

    text: str
    start: float
    end: float
    probability: float


@dataclass(frozen=True)
class Span:
    """Stream [t0, t0 + dur) holds meeting audio [m0, m0 + dur) (from one piece)."""

    t0: float
    m0: float
    dur: float
    source: str  # "direct" | "separated"


@dataclass(frozen=True)
class StreamState:
    """The value a speaker's stream is: passed into `ASRStream.push/decode` and returned."""

    speaker: str
    audio: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    buf_start: float = 0.0  # stream time of audio[0]
    spans: tuple[Span, ...] = ()
    last_meeting_end: float | None = None  # meeting time where the last piece ended
    committed_tail: tuple[Word, ...] = ()  # the last committed words (for n-gram de-dup)
    committed_end: float = 0.0  # stream time of the last committed word's end
    scrolled_text: str = ""  # committed text before buf_start (the prompt), last chars
    in_buffer_text: str = ""  # committed text inside the buffer (moves to scrolled on trim)
    hypothesis: tuple[Word, ...] = ()  # last decode's uncommitted words
    # how the last decode read the last committed words in the buffer (normalized, up to 3)
    hypothesis_context: tuple[str, ...] = ()
    segment_ends: tuple[float, ...] = ()  # last decode's segment ends (stream time)
    pending_s: float = 0.0  # audio appended since the last decode

    @property
    def stream_end(self) -> float:
        return self.buf_start + self.audio.size / SAMPLE_RATE


def to_meeting(spans: tuple[Span, ...], t: float, side: str = "start") -> tuple[float, str]:
    """Stream time -> (meeting time, source). A time in an inserted gap (or past either end)
    is not heard audio: a word's start there moves to where speech resumes (the next span's
    start), a word's end back to where it stopped (the previous span's end)."""
    prev = nxt = None
    for s in spans:
        if s.t0 <= t <= s.t0 + s.dur:
            return s.m0 + (t - s.t0), s.source
        if s.t0 + s.dur < t and (prev is None or s.t0 > prev.t0):
            prev = s
        if s.t0 > t and (nxt is None or s.t0 < nxt.t0):
            nxt = s
    if side == "start" and nxt is not None or prev is None:
        return (nxt.m0, nxt.source) if nxt is not None else (t, "direct")
    return prev.m0 + prev.dur, prev.source


def word_to_meeting(spans: tuple[Span, ...], start: float, end: float) -> tuple[float, float, str]:
    """A word's stream times -> (meeting start, meeting end, source). A word lies within one
    piece: Whisper can stretch a word across the inserted gap between two pieces, which may
    be seconds (another speaker's turn) apart in the meeting; the word is kept to the piece
    that holds most of it."""
    best, most = None, 0.0
    for s in spans:
        inside = min(end, s.t0 + s.dur) - max(start, s.t0)
        if inside > most:
            best, most = s, inside
    if best is None:  # wholly in a gap or outside the spans
        m0, source = to_meeting(spans, start, "start")
        m1, _ = to_meeting(spans, end, "end")
        return m0, max(m0, m1), source
    a, b = max(start, best.t0), min(end, best.t0 + best.dur)
    return best.m0 + (a - best.t0), best.m0 + (b - best.t0), best.source


class ASRStream:
    """Decodes speaker streams with one Whisper model (shared by every speaker)."""

    def __init__(self, model, config: PipelineConfig):
        from ..models.whisper.transcribe import get_tokenizer

        self.model = model
        self.cfg = config
        self.tokenizer = get_tokenizer(model)

    @staticmethod
    def initial_state(speaker: str) -> StreamState:
        return StreamState(speaker)

    def push(
        self, state: StreamState, audio: np.ndarray, meeting_start: float, source: str
    ) -> StreamState:
        """Append one piece (meeting time `meeting_start`) to the stream."""
        parts, pending = [state.audio], state.pending_s
        t = state.stream_end
        if state.last_meeting_end is not None and state.audio.size:
            gap = meeting_start - state.last_meeting_end
            if gap > 1e-3:  # a pause (or other speakers) since this speaker's last piece
                g = int(round(min(gap, self.cfg.gap_s) * SAMPLE_RATE))
                parts.append(np.zeros(g, np.float32))
                t += g / SAMPLE_RATE
                pending += g / SAMPLE_RATE
        dur = audio.size / SAMPLE_RATE
        parts.append(audio.astype(np.float32, copy=False))
        spans = _drop_old(state.spans + (Span(t, meeting_start, dur, source),), state.buf_start)
        return replace(
            state,
            audio=np.concatenate(parts),
            spans=spans,
            last_meeting_end=meeting_start + dur,
            pending_s=pending + dur,
        )

    def ready(self, state: StreamState) -> bool:
        return state.pending_s >= self.cfg.min_chunk_s

    def decode(self, state: StreamState, final: bool = False) -> tuple[StreamState, list, list]:
        """Re-decode the buffer; returns (state, committed words, partial words), both as
        meeting-time dicts. With `final` everything decoded is committed (end of stream)."""
        if state.audio.size == 0:
            return replace(state, pending_s=0.0), [], []
        if final and state.pending_s == 0 and state.hypothesis:
            # no audio since the last decode: it would decode the same (greedy) words again
            new, seg_ends = list(state.hypothesis), state.segment_ends
        else:
            words, seg_ends = self._transcribe(state)
            new = _after_commit(state.committed_tail, words, state.committed_end)
        tail = _tail_key(state)
        context = () if final else _context(words, new, len(tail))
        if final:
            commit, rest = new, []
            if not new and state.hypothesis:
                # the last decode heard words this one lost (a noisy buffer end decoded to
                # nothing): they are what the speaker said, as far as anyone will know
                commit = list(state.hypothesis)
            commit = self._complete_final(state, commit)
        elif _same_context(context, state.hypothesis_context, tail):
            commit, rest = _agree(state.hypothesis, new)
        else:  # the two decodes read the committed words differently: nothing is agreed on
            commit, rest = [], new
        commit, rest = self._commit_old(state, commit, rest, final)
        commit = self._fill_holes(state, commit)
        state = self._commit(state, commit)
        state = replace(
            state,
            hypothesis=tuple(rest),
            # a decode that committed words read them as committed (they are the new tail)
            hypothesis_context=_tail_key(state) if commit else context,
            segment_ends=seg_ends,
            pending_s=0.0,
        )
        # words map to meeting time through the spans before the trim drops the old ones
        out = [self._out(state, w) for w in commit], [self._out(state, w) for w in rest]
        return self._trim(state, final), *out

    # --- internals ------------------------------------------------------------------------------

    def _complete_final(self, state: StreamState, commit: list[Word]) -> list[Word]:
        """At a final decode, what Whisper left out of the buffer's end, decoded alone.

        Whisper stops early in a buffer whose end sounds unlike its start: a 2.3 s sentence
        of another voice appended to a speaker's stream (the fourth voice with
        --max-speakers 3) came out as one word, "He", and alone as the whole sentence.
        Everything in a stream is speech (VAD pieces and 0.3 s gaps), so two signs of it are
        decoded again: audio after the last word heard at least `tail_redecode_s` long (that
        end alone, its words added), and an uncommitted stretch that long with fewer than
        `min_words_per_s` words in it (the stretch alone, kept when it hears more words)."""
        start = max(state.committed_end, state.buf_start)
        span = state.stream_end - start
        if span < self.cfg.tail_redecode_s:
            return commit
        if len(commit) < self.cfg.min_words_per_s * span:
            words = self._decode_range(state, start, None, [])
            return words if len(words) > len(commit) else commit
        end = max(commit[-1].end, start) if commit else start
        if state.stream_end - end < self.cfg.tail_redecode_s:
            return commit
        return commit + self._decode_range(state, end, None, commit)

    def _commit_old(
        self, state: StreamState, commit: list[Word], rest: list[Word], final: bool
    ) -> tuple[list[Word], list[Word]]:
        """A buffer past `max_buffer_s` (Whisper sees 30 s) without agreement: the words this
        decode heard more than `buffer_trim_s` before the buffer's end are committed, so the
        trim keeps them. Before, the oldest audio was dropped with its words: a meeting's
        first 14 s were lost while the decodes read the first committed words two ways."""
        if final or state.audio.size / SAMPLE_RATE <= self.cfg.max_buffer_s:
            return commit, rest
        limit = state.stream_end - self.cfg.buffer_trim_s
        n = 0
        while n < len(rest) and rest[n].end <= limit:
            n += 1
        return commit + rest[:n], rest[n:]

    def _fill_holes(self, state: StreamState, commit: list[Word]) -> list[Word]:
        """Speech Whisper skipped, decoded alone before the words after it are committed.

        Whisper can jump its timestamps over part of a buffer: on LibriSpeech 3331-159605-0008
        the decodes of a 9-15 s buffer went from "... confess that the" at 5.8 s straight to
        "the" at 13.9 s, the buffer was then trimmed at that segment's end, and the 8 s
        between ("old temptation has saved him more than once ...") were lost. Everything in
        a stream is speech (VAD pieces, 0.3 s gaps), so a stretch of `hole_redecode_s` or more
        without a word, between the last committed word and the words now committed or
        between two of them, is decoded alone and its words are committed in their place
        (after a stretched word, from that word's start: `_after_word`)."""
        if not commit:
            return commit
        out: list[Word] = []
        last = state.committed_tail[-1] if state.committed_tail else None
        if last is not None and last.end > state.buf_start:
            a, prev = self._after_word(last)
            a = max(a, state.buf_start)
        else:
            a = prev = max(state.committed_end, state.buf_start)
        heard: list[Word] = []
        for w in commit:
            if w.start - prev >= self.cfg.hole_redecode_s:
                found = self._decode_range(state, a, w.start, heard)
                out += found
                heard += found
            out.append(w)
            heard.append(w)
            after = self._after_word(w)
            if after[1] > prev:
                a, prev = after
        return out

    def _after_word(self, w: Word) -> tuple[float, float]:
        """Where a stretch of speech after word `w` is decoded from, and where it counts from.
        Whisper can stretch a word over speech it skipped ("the" over 5.8-8.0 s, then "weak"
        at 8.6 s, on 3331-159605-0008): a word longer than `max_word_s` is taken to end
        `max_word_s` after its start, and the stretch is decoded from the word's start (the
        repeated word is dropped by `_after_commit`)."""
        if w.end - w.start > self.cfg.max_word_s:
            return w.start, w.start + self.cfg.max_word_s
        return w.end, w.end

    def _decode_range(
        self, state: StreamState, a: float, b: float | None, heard: list[Word]
    ) -> list[Word]:
        """Stream time [a, b) of the buffer (b None: to its end) decoded alone, prompted with
        everything committed and `heard` before it; the words inside it that repeat nothing
        already heard."""
        n0 = int(round((a - state.buf_start) * SAMPLE_RATE))
        n1 = None if b is None else int(round((b - state.buf_start) * SAMPLE_RATE))
        text = state.scrolled_text + state.in_buffer_text + "".join(w.text for w in heard)
        part = replace(
            state,
            audio=state.audio[n0:n1],
            buf_start=a,
            scrolled_text=text[-4 * self.cfg.prompt_chars :],
        )
        words, _ = self._transcribe(part)
        if b is not None:
            words = [w for w in words if w.start < b]
        return _after_commit((state.committed_tail + tuple(heard))[-5:], words, a)

    def _transcribe(self, state: StreamState) -> tuple[list[Word], tuple[float, ...]]:
        from ..models.whisper.transcribe import transcribe

        prompt = state.scrolled_text[-self.cfg.prompt_chars :].strip() or None
        opts = {"language": self.cfg.language} if self.cfg.language else {}
        if self.cfg.beam_size:
            opts["beam_size"] = self.cfg.beam_size

        def run(prompt):
            return transcribe(
                state.audio,
                self.model,
                initial_prompt=prompt,
                word_timestamps=True,
                temperature=self.cfg.temperature,
                **opts,
            )

        res = run(prompt)
        if prompt and _derailed(res):
            res = run(None)
        off = state.buf_start
        segments = _drop_invented_tail([s for s in res["segments"] if s.get("words")])
        words = [
            Word(w["word"], off + w["start"], off + w["end"], float(w.get("probability", 1.0)))
            for s in segments
            for w in s["words"]
            if w["word"].strip()
        ]
        return words, tuple(off + s["end"] for s in segments)

    def _commit(self, state: StreamState, commit: list[Word]) -> StreamState:
        if not commit:
            return state
        text = "".join(w.text for w in commit)
        return replace(
            state,
            committed_tail=(state.committed_tail + tuple(commit))[-5:],
            committed_end=commit[-1].end,
            in_buffer_text=state.in_buffer_text + text,
        )

    def _trim(self, state: StreamState, final: bool) -> StreamState:
        """Cut the buffer at a committed segment end once it is long (bounded memory/cost)."""
        length = state.audio.size / SAMPLE_RATE
        cut = None
        if length > self.cfg.buffer_trim_s or final:
            ends = [t for t in state.segment_ends if t <= state.committed_end + 1e-3]
            cut = max(ends) if ends else None
            if final:
                cut = state.stream_end
        if cut is None and length > self.cfg.max_buffer_s:
            cut = state.committed_end if state.committed_end > state.buf_start else None
            if cut is None:  # nothing agreed in ~30 s: drop the oldest audio
                cut = state.stream_end - self.cfg.buffer_trim_s
        if cut is None or cut <= state.buf_start:
            return state
        n = int(round((cut - state.buf_start) * SAMPLE_RATE))
        # committed words inside the buffer up to the cut become prompt text
        scrolled = (state.scrolled_text + state.in_buffer_text)[-4 * self.cfg.prompt_chars :]
        keep = "".join(w.text for w in state.committed_tail if w.start >= cut)
        if keep and scrolled.endswith(keep):
            scrolled = scrolled[: -len(keep)]
        return replace(
            state,
            audio=state.audio[n:].copy(),
            buf_start=state.buf_start + n / SAMPLE_RATE,
            spans=_drop_old(state.spans, state.buf_start + n / SAMPLE_RATE),
            scrolled_text=scrolled,
            in_buffer_text=keep,
            hypothesis=tuple(w for w in state.hypothesis if w.start >= cut),
        )

    def _out(self, state: StreamState, w: Word) -> dict:
        start, end, source = word_to_meeting(state.spans, w.start, w.end)
        return {
            "word": w.text.strip(),
            "start": round(start, 3),
            "end": round(end, 3),
            "probability": round(w.probability, 4),
            "source": source,
        }


PROMPT_RESET_TEMPERATURE = 0.5  # openai-whisper's rule for dropping the previous text


def _derailed(res: dict) -> bool:
    """Whether a prompted decode fell back past temperature 0.5: openai-whisper stops
    conditioning on the previous text after such a window (transcribe.py,
    `condition_on_previous_text`); a stream decodes its buffer again without the prompt. On a
    5 dB meeting a prompt ending mid-sentence ("... eggs. One wine") sent a 17 s buffer to
    temperature 1.0 and an invented sentence (mean log-prob -4.9) that was then dropped;
    unprompted, the same buffer decoded at temperature 0 to what was said."""
    return any(s.get("temperature", 0.0) > PROMPT_RESET_TEMPERATURE for s in res["segments"])


NO_SPEECH_THRESHOLD = 0.6  # openai-whisper's default


def _hallucinated(words: list[dict], per_word: bool = False) -> bool:
    """Whether a decoded segment looks invented rather than heard, by openai-whisper's word
    anomaly score (whisper/transcribe.py, MIT, for its `hallucination_silence_threshold`):
    over the first 8 words (punctuation-only tokens left out), a word scores 1 when its
    probability is under 0.15, (0.133 - d) * 15 when its duration d is under 0.133 s and
    d - 2 when over 2 s; the segment is invented when the sum reaches 3 or (less 0.01) the
    word count. Whisper ends a buffer that stops mid-speech or in noise with such segments
    ("Thank you." at p 0.02 and 0.08 s a word on the demo; 16 words of "subscribe, press the
    notification bell" at p < 0.6 and 0 s each on a separated source); a streaming buffer ends
    that way at every turn (an 8 kHz "seven" came out as "six, two, seven.", the first two at
    p < 0.01 and 0 s: of such a tail only the words with no anomaly at all are kept).
    openai-whisper judges a segment only between silences; the
    streams judge only a decode's last segment, and `per_word` keeps only the second test
    (about one anomaly per word): tiny's word times inside speech are often 0 s long, and a
    whole heard 16-word sentence at a buffer's end reached 3.1 on two such words."""
    scored = [w for w in words if w["word"].strip(_PUNCT)][:8]
    if not scored:
        return False
    score = sum(_anomaly(w) for w in scored)
    return (score >= 3 and not per_word) or score + 0.01 >= len(scored)


def _drop_invented_tail(segments: list[dict]) -> list[dict]:
    """A decode's segments without what Whisper invented at its end: when the last segment
    looks invented (`_hallucinated`, per word, or `_unheard`), only its words with no anomaly
    stay."""
    if not segments:
        return segments
    last = segments[-1]
    if not (_hallucinated(last["words"], per_word=True) or _unheard(last)):
        return segments
    kept = [w for w in last["words"] if _anomaly(w) == 0.0]
    return segments[:-1] + ([{**last, "words": kept}] if kept else [])


def _unheard(segment: dict) -> bool:
    """A segment whose own window Whisper judged more likely silence than speech
    (no_speech_prob above openai-whisper's no_speech_threshold, 0.6) and with at least one
    anomaly in its words. On the demo, S3's final decode ended "... than she suspected." and
    then, in the 0.3 s window left after that segment, "Thank you." (no_speech_prob 0.73,
    "Thank" at p 0.08): half an anomaly per word, under `_hallucinated`'s bar."""
    if float(segment.get("no_speech_prob", 0.0)) <= NO_SPEECH_THRESHOLD:
        return False
    return sum(_anomaly(w) for w in segment["words"]) >= 1.0


def _anomaly(w: dict) -> float:
    """openai-whisper's anomaly score of one word (see `_hallucinated`)."""
    d = w["end"] - w["start"]
    score = 1.0 if float(w.get("probability", 1.0)) < 0.15 else 0.0
    score += (0.133 - d) * 15 if d < 0.133 else 0.0
    return score + (d - 2.0 if d > 2.0 else 0.0)


def _agree(previous: tuple[Word, ...], new: list[Word]) -> tuple[list[Word], list[Word]]:
    """LocalAgreement-2: the longest common prefix of two consecutive hypotheses is final."""
    n = 0
    while n < min(len(previous), len(new)) and _norm(previous[n].text) == _norm(new[n].text):
        n += 1
    return new[:n], new[n:]


def _tail_key(state: StreamState) -> tuple[str, ...]:
    """The last committed words still in the buffer (up to 3), normalized."""
    inside = [w for w in state.committed_tail if w.start >= state.buf_start - 1e-3]
    return tuple(_norm(w.text) for w in inside[-3:])


def _context(words: list[Word], new: list[Word], k: int) -> tuple[str, ...]:
    """How a decode read the committed words: its `k` words before `new` (those after the
    commit point), normalized."""
    if k == 0:
        return ()
    i = next((j for j, w in enumerate(words) if w is new[0]), len(words)) if new else len(words)
    return tuple(_norm(w.text) for w in words[max(0, i - k) : i])


def _same_context(context: tuple[str, ...], previous: tuple[str, ...], tail: tuple[str, ...]):
    """Whether two consecutive decodes read the committed words alike, so that their words
    after them can agree (LocalAgreement). Whisper can flip between two readings of a
    stretch: on LibriSpeech 2609-156975-0007 the decodes alternated between "they
    traditionally found their epromes" and "they're traditional founder, that from", and
    "they traditionally found" was committed from the first, then "that from and" from two
    decodes of the second: a mix that neither heard. What a decode puts after words it
    reads otherwise continues its own reading; two decodes that read them the same other
    way (a consistent rereading) still agree, or commits would stall."""
    k = len(tail)
    return k == 0 or context[-k:] == previous[-k:]


def _after_commit(tail: tuple[Word, ...], words: list[Word], committed_end: float) -> list[Word]:
    """The words of a new decode that come after what is committed. Word times jitter by a
    few tens of ms between decodes, so the committed tail's last 2-3 words are first looked
    for by text near the commit point; only without a match does time decide (words starting
    after the commit point, less 0.1 s, as whisper_streaming does)."""
    near = [i for i, w in enumerate(words) if committed_end - 1.5 < w.end < committed_end + 1.0]
    for n in (3, 2):
        if len(tail) < n:
            continue
        key = [_norm(w.text) for w in tail[-n:]]
        for i in reversed(near):
            if [_norm(w.text) for w in words[i : i + n]] == key:
                return words[i + n :]
    new = [w for w in words if w.start > committed_end - 0.1]
    return _drop_repeated_tail(tail, new, committed_end)


def _drop_repeated_tail(tail: tuple[Word, ...], new: list[Word], committed_end: float):
    """Whisper often repeats the last committed words at the start of a new decode: drop an
    n-gram (n <= 5) that equals the committed tail when it starts near the commit point."""
    if not new or not tail or abs(new[0].start - committed_end) > 1.0:
        return new
    for n in range(min(len(tail), len(new), 5), 0, -1):
        if [_norm(w.text) for w in tail[-n:]] == [_norm(w.text) for w in new[:n]]:
            return new[n:]
    return new


def _drop_old(spans: tuple[Span, ...], buf_start: float) -> tuple[Span, ...]:
    # spans wholly before the buffer are no longer needed (keep one for snapping)
    keep = [s for s in spans if s.t0 + s.dur > buf_start - 1.0]
    return tuple(keep) if keep else spans[-1:]
