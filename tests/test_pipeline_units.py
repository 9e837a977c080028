"""The pipeline's stages alone, each with a known answer (no model weights needed)."""

from __future__ import annotations

import io
from dataclasses import replace

import numpy as np
import pytest

from mlx_audio_stack.pipeline.asr import (
    ASRStream,
    Span,
    StreamState,
    Word,
    _after_commit,
    _agree,
    _drop_invented_tail,
    _drop_repeated_tail,
    _hallucinated,
    to_meeting,
    word_to_meeting,
)
from mlx_audio_stack.pipeline.config import FRAME_S, SAMPLE_RATE, VAD_FRAME, PipelineConfig
from mlx_audio_stack.pipeline.driver import _merge_turns
from mlx_audio_stack.pipeline.live import pcm_chunks
from mlx_audio_stack.pipeline.outputs import cues, rttm
from mlx_audio_stack.pipeline.stages import OracleOverlap, OracleSeparator, Segmenter
from mlx_audio_stack.pipeline.tracker import SpeakerTracker


def _w(text, start, end=None):
    return Word(text, start, end if end is not None else start + 0.3, 0.9)


def test_local_agreement_commits_the_common_prefix_only():
    prev = (_w(" Hello", 0.0), _w(" there,", 0.4), _w(" general", 0.8))
    new = [_w(" hello", 0.0), _w(" there", 0.4), _w(" Kenobi", 0.8), _w(" said", 1.2)]
    commit, rest = _agree(prev, new)
    # case and punctuation do not block agreement; the first differing word does
    assert [w.text for w in commit] == [" hello", " there"]
    assert [w.text for w in rest] == [" Kenobi", " said"]
    assert _agree((), new) == ([], new)


def test_repeated_committed_tail_is_dropped_near_the_commit_point():
    tail = (_w(" the", 1.0), _w(" cat", 1.3))
    new = [_w(" the", 1.05), _w(" cat", 1.35), _w(" sat", 1.7)]
    assert [w.text for w in _drop_repeated_tail(tail, new, 1.6)] == [" sat"]
    far = [_w(" the", 5.0), _w(" cat", 5.3)]
    assert _drop_repeated_tail(tail, far, 1.6) == far  # far from the commit point: kept


def test_words_after_the_commit_point_are_found_by_text_first():
    tail = (_w(" carrots", 4.1, 4.35), _w(" and", 4.35, 4.63))
    # the next decode puts "bruised" 0.13 s before the old commit point: time alone drops it
    new = [_w(" carrots", 4.05, 4.3), _w(" and", 4.3, 4.45), _w(" bruised", 4.5, 4.9)]
    assert [w.text for w in _after_commit(tail, new, 4.63)] == [" bruised"]
    # no textual match: the time rule (start after the commit point less 0.1 s)
    other = [_w(" potatoes", 4.6, 5.0), _w(" fat", 5.1, 5.3)]
    assert [w.text for w in _after_commit(tail, other, 4.63)] == [" potatoes", " fat"]
    assert _after_commit((), other, 0.0) == other


def test_a_word_across_the_gap_between_two_pieces_stays_in_one_piece():
    """Whisper stretched a word over the 0.3 s gap between two of a speaker's pieces 14 s apart
    in the meeting (the demo's S1 "fat" ran 4.5 -> 18.3 s, across the other speakers' turns)."""
    spans = (Span(0.0, 4.0, 1.0, "direct"), Span(1.3, 18.0, 1.0, "separated"))
    # mostly in the first piece: ends where that piece ends
    assert word_to_meeting(spans, 0.7, 1.4) == pytest.approx((4.7, 5.0, "direct"))
    # mostly in the second: starts where it starts
    assert word_to_meeting(spans, 0.9, 1.8) == pytest.approx((18.0, 18.5, "separated"))
    # inside one piece: unchanged
    assert word_to_meeting(spans, 1.4, 1.6) == pytest.approx((18.1, 18.3, "separated"))
    # wholly in the gap: a zero-length word where speech resumes
    assert word_to_meeting(spans, 1.05, 1.25) == pytest.approx((18.0, 18.0, "separated"))


def test_stream_time_maps_back_to_meeting_time():
    spans = (Span(0.0, 10.0, 2.0, "direct"), Span(2.3, 20.0, 1.0, "separated"))
    assert to_meeting(spans, 1.5) == (11.5, "direct")
    assert to_meeting(spans, 2.8) == pytest.approx((20.5, "separated"))
    # in the inserted gap: a start moves on to where speech resumes, an end back to where it
    # stopped; past either end, to the nearest span's edge
    assert to_meeting(spans, 2.1, "start") == (20.0, "separated")
    assert to_meeting(spans, 2.1, "end") == (12.0, "direct")
    assert to_meeting(spans, 9.0, "start") == (21.0, "separated")
    assert to_meeting(spans, -1.0, "end") == (10.0, "direct")


class _FixedDecoder(ASRStream):
    """Test double: an ASRStream whose Whisper decode returns fixed stream-time words, to check
    the commit and time-map logic around it with a known answer."""

    def __init__(self, words):
        self.cfg, self.words = PipelineConfig(), words

    def _transcribe(self, state):
        self.calls = getattr(self, "calls", 0) + 1
        return list(self.words), (self.words[-1].end,)


def test_final_words_keep_their_meeting_times_when_the_buffer_is_dropped():
    # two pieces of one speaker: meeting 0-2 s and 10-12 s, a 0.3 s gap between them in the
    # stream; the final decode drops the whole buffer (and its old spans) after committing
    dec = _FixedDecoder([_w(" hello", 0.5, 0.9), _w(" again", 2.4, 2.8)])
    st = StreamState("S1")
    st = dec.push(st, np.zeros(2 * SAMPLE_RATE, np.float32), 0.0, "direct")
    st = dec.push(st, np.zeros(2 * SAMPLE_RATE, np.float32), 10.0, "separated")
    st, committed, partial = dec.decode(st, final=True)
    assert [(w["word"], w["start"], w["end"], w["source"]) for w in committed] == [
        ("hello", 0.5, 0.9, "direct"),
        ("again", 10.1, 10.5, "separated"),
    ]
    assert partial == [] and st.audio.size == 0
    # a piece after the dropped buffer starts the new buffer without a leading gap
    st = dec.push(st, np.ones(SAMPLE_RATE, np.float32), 20.0, "direct")
    assert st.audio.size == SAMPLE_RATE and st.spans[-1].t0 == pytest.approx(st.buf_start)


def test_a_final_decode_without_new_audio_commits_the_last_hypothesis_without_decoding():
    dec = _FixedDecoder([_w(" one", 0.2, 0.5), _w(" two", 0.6, 0.9)])
    st = dec.push(StreamState("S1"), np.zeros(SAMPLE_RATE, np.float32), 5.0, "direct")
    st, committed, partial = dec.decode(st)  # first decode: nothing agreed yet
    assert committed == [] and [w["word"] for w in partial] == ["one", "two"]
    st, committed, _ = dec.decode(st, final=True)  # the speaker went quiet: no new audio
    assert [w["word"] for w in committed] == ["one", "two"] and dec.calls == 1
    assert committed[0]["start"] == 5.2


def test_a_final_decode_that_hears_nothing_keeps_the_last_decodes_words():
    """A noisy buffer end can decode to nothing at the final decode; the words the decode
    before heard must then be committed, not lost with the buffer."""

    class Fading(_FixedDecoder):
        def _transcribe(self, state):
            self.calls = getattr(self, "calls", 0) + 1
            return ([], ()) if self.calls > 1 else (list(self.words), (self.words[-1].end,))

    dec = Fading([_w(" the", 0.2, 0.4), _w(" pacific", 0.5, 0.9)])
    st = dec.push(StreamState("S1"), np.zeros(SAMPLE_RATE, np.float32), 3.0, "direct")
    st, committed, partial = dec.decode(st)
    assert committed == [] and len(partial) == 2
    st = dec.push(st, np.zeros(SAMPLE_RATE // 2, np.float32), 4.0, "direct")  # new audio
    st, committed, _ = dec.decode(st, final=True)
    assert dec.calls == 2 and [w["word"] for w in committed] == ["the", "pacific"]
    assert st.audio.size == 0 and st.hypothesis == ()


def test_a_final_decode_decodes_a_long_unheard_end_alone():
    """Whisper can stop early in a buffer whose end sounds unlike its start (another voice
    appended): at a final decode, audio after the last word heard that is at least
    tail_redecode_s long is decoded alone, and its words are committed after the others (a
    repeat of the last words is dropped). A shorter end is not decoded again."""

    class Truncating(_FixedDecoder):
        def _transcribe(self, state):
            self.starts = getattr(self, "starts", []) + [round(state.buf_start, 3)]
            if len(self.starts) == 1:  # the whole buffer: only its first words
                return [_w(" and", 0.0, 0.1), _w(" heard", 0.1, 0.5), _w(" him.", 0.5, 0.9)], (0.9,)
            # the end alone (stream time): it starts by repeating the last word
            return [_w(" him.", 0.9, 1.0), _w(" you", 1.3, 1.5), _w(" don't", 1.5, 1.8)], (1.8,)

    dec = Truncating([])
    st = dec.push(StreamState("S2"), np.zeros(SAMPLE_RATE, np.float32), 10.0, "direct")
    st = dec.push(st, np.zeros(SAMPLE_RATE, np.float32), 12.0, "direct")  # 0.3 s gap first
    st, committed, _ = dec.decode(st, final=True)
    assert dec.starts == [0.0, 0.9]  # the second decode starts where the words stopped
    assert [w["word"] for w in committed] == ["and", "heard", "him.", "you", "don't"]
    assert [w["start"] for w in committed][3:] == [12.0, 12.2]  # after the gap, meeting time
    assert st.audio.size == 0
    dec = Truncating([])  # an end shorter than tail_redecode_s: one decode
    st = dec.push(StreamState("S2"), np.zeros(int(1.8 * SAMPLE_RATE), np.float32), 0.0, "direct")
    st, committed, _ = dec.decode(st, final=True)
    assert dec.starts == [0.0] and [w["word"] for w in committed] == ["and", "heard", "him."]


def test_speech_whisper_skipped_is_decoded_alone_before_the_words_after_it_are_committed():
    """Whisper jumped its timestamps over 6 s of a buffer ("... that the" at 1 s, then "the"
    at 7.5 s): the words after the jump are committed and the buffer trimmed past the skipped
    speech, which was lost. The stretch without words is decoded alone, its words committed
    in their place (words repeating the last committed one dropped); a short pause is not."""

    class Skipping(_FixedDecoder):
        def _transcribe(self, state):
            self.ranges = getattr(self, "ranges", []) + [
                (round(state.buf_start, 3), round(state.buf_start + state.audio.size / 16000, 3))
            ]
            if state.buf_start == 0.0:  # the whole buffer: a jump from 1.0 to 7.5 s
                return [_w(" that", 0.5, 0.8), _w(" the", 0.8, 1.0), _w(" the", 7.5, 7.7)], (7.7,)
            # the skipped stretch alone (stream time): it starts by repeating "the"
            return [_w(" the", 1.0, 1.2), _w(" old", 1.3, 1.6), _w(" temptation", 1.7, 2.4)], (2.4,)

    for hole_s, ranges, words in (
        (1.5, [(0.0, 8.0), (0.0, 8.0), (1.0, 7.5)], ["that", "the", "old", "temptation", "the"]),
        (6.6, [(0.0, 8.0), (0.0, 8.0)], ["that", "the", "the"]),  # a pause below the bar
    ):
        dec = Skipping([])
        dec.cfg = replace(dec.cfg, hole_redecode_s=hole_s)
        st = dec.push(StreamState("S1"), np.zeros(8 * SAMPLE_RATE, np.float32), 20.0, "direct")
        st, committed, _ = dec.decode(st)  # LocalAgreement: the second decode commits
        assert committed == []
        st, committed, _ = dec.decode(replace(st, pending_s=1.0))
        assert dec.ranges == ranges and [w["word"] for w in committed] == words
        starts = [20.5, 20.8, 21.3, 21.7, 27.5] if len(words) == 5 else [20.5, 20.8, 27.5]
        assert [w["start"] for w in committed] == starts  # meeting time


def test_skipped_speech_after_a_stretched_word_is_decoded_from_that_words_start():
    """3331-159605-0008 again: "the" was committed stretched over 5.8-8.0 s (the skipped
    speech inside it), so the stretch from its end to the next word was short and began
    mid-sentence ("monster weak" for "... assailed her more than once that week"). A word
    longer than max_word_s counts as ending max_word_s after its start, and the stretch is
    decoded from the word's start; the decode's repeat of the word is dropped."""

    class Stretching(_FixedDecoder):
        def _transcribe(self, state):
            self.ranges = getattr(self, "ranges", []) + [round(state.buf_start, 3)]
            if state.buf_start == 0.0:  # the whole buffer: "the" stretched, a jump to 7.5 s
                return [
                    _w(" that", 0.5, 0.8),
                    _w(" the", 0.8, 3.0),
                    _w(" week", 3.6, 3.9),
                    _w(" she", 7.5, 7.7),
                ], (7.7,)
            return [
                _w(" the", 0.8, 1.0),
                _w(" old", 1.0, 1.3),
                _w(" temptation", 1.3, 2.0),
                _w(" that", 3.3, 3.5),
                _w(" week", 3.6, 3.9),
            ], (3.9,)

    dec = Stretching([])
    st = dec.push(StreamState("S1"), np.zeros(8 * SAMPLE_RATE, np.float32), 0.0, "direct")
    st, committed, _ = dec.decode(st)
    st, committed, _ = dec.decode(replace(st, pending_s=1.0))
    # "the" ends (for the stretch) at 1.8 s, "week" starts 1.8 s later: decoded from 0.8 s
    # (and the stretch after "week" to "she" at 7.5 s, whose decode hears nothing new)
    assert dec.ranges == [0.0, 0.0, 0.8, 3.9]
    words = [w["word"] for w in committed]
    assert words == ["that", "the", "old", "temptation", "that", "week", "she"]


class _Scripted(_FixedDecoder):
    """Test double: each decode returns the next word list of a script."""

    def _transcribe(self, state):
        self.calls = getattr(self, "calls", 0) + 1
        words = self.script[min(self.calls, len(self.script)) - 1]
        return list(words), (words[-1].end,)


def test_decodes_that_read_the_committed_words_differently_agree_on_nothing_after_them():
    """LibriSpeech 2609-156975-0007: the decodes flipped between two readings, "they
    traditionally found" was committed from one and then "that from and" from two decodes of
    the other, a mix neither heard. Two consecutive decodes agree on words after the
    committed ones only if they read the last committed words (up to 3) alike."""
    a = [_w(" they", 0.0, 0.3), _w(" traditionally", 0.3, 0.9), _w(" found", 0.9, 1.2)]
    b = [_w(" they're", 0.0, 0.3), _w(" traditional", 0.3, 0.8), _w(" founder,", 0.8, 1.3)]
    b2 = b[:2] + [_w(" father,", 0.8, 1.3)]
    rest_a = [_w(" their", 1.3, 1.5), _w(" epromes", 1.5, 2.0), _w(" and", 2.1, 2.3)]
    rest_b = [_w(" that", 1.4, 1.6), _w(" from", 1.6, 1.9), _w(" and", 2.1, 2.3)]

    def run(script, steps):
        dec = _Scripted([])
        dec.script = script
        st = dec.push(StreamState("S1"), np.zeros(4 * SAMPLE_RATE, np.float32), 0.0, "direct")
        got = []
        for _ in range(steps):
            st, committed, partial = dec.decode(replace(st, pending_s=1.0))
            got.append([w["word"] for w in committed])
        return got, [w["word"] for w in partial]

    # "they traditionally found" agreed, then two decodes of other readings of it (the last
    # one differs in its last word too): "that from and" stays partial
    got, partial = run([a, a, b + rest_b, b2 + rest_b], 4)
    assert got == [[], ["they", "traditionally", "found"], [], []]
    assert partial == ["that", "from", "and"]
    # after one other reading, the committed reading again: agreement needs two of them
    got, _ = run([a, a, b + rest_b, a + rest_a, a + rest_a], 5)
    assert got[2:] == [[], [], ["their", "epromes", "and"]]
    # two decodes that read the committed words the same other way still agree
    got, _ = run([a, a, b + rest_b, b + rest_b], 4)
    assert got[3] == ["that", "from", "and"]


def test_a_buffer_without_agreement_past_max_buffer_s_commits_its_old_words():
    """A meeting's first 14 s were lost: the decodes never agreed, and a buffer past
    max_buffer_s dropped its oldest audio with the words in it. The words the decode heard
    more than buffer_trim_s before the buffer's end are committed instead, then trimmed."""
    words = [_w(f" w{i}", float(i), i + 0.5) for i in range(29)]
    dec = _FixedDecoder(words)  # its first decode: nothing to agree with yet
    st = dec.push(StreamState("S1"), np.zeros(29 * SAMPLE_RATE, np.float32), 0.0, "direct")
    st, committed, partial = dec.decode(st)
    # 29 s > max_buffer_s: the words ending by 29 - 15 = 14 s are committed, then trimmed
    assert [w["word"] for w in committed] == [f"w{i}" for i in range(14)]
    assert [w["word"] for w in partial] == [f"w{i}" for i in range(14, 29)]
    assert st.buf_start == pytest.approx(13.5) and st.audio.size == int(15.5 * SAMPLE_RATE)
    # below max_buffer_s a first decode commits nothing
    st = dec.push(StreamState("S1"), np.zeros(28 * SAMPLE_RATE, np.float32), 0.0, "direct")
    assert dec.decode(st)[1] == []


def test_a_final_decode_with_too_few_words_for_its_audio_decodes_it_again_alone():
    """One word placed at the end of 2.3 s of uncommitted speech (what tiny.en made of the
    fourth voice's sentence): fewer than min_words_per_s, so the stretch is decoded alone and
    the decode that hears more words is kept."""

    class Sparse(_FixedDecoder):
        def _transcribe(self, state):
            self.starts = getattr(self, "starts", []) + [round(state.buf_start, 3)]
            if len(self.starts) == 1:
                return [_w(" He", 2.0, 2.3)], (2.3,)
            return [_w(" You", 0.1, 0.3), _w(" don't", 0.3, 0.6), _w(" mean", 0.6, 0.9)], (0.9,)

    dec = Sparse([])
    st = dec.push(StreamState("S2"), np.zeros(int(2.3 * SAMPLE_RATE), np.float32), 41.0, "direct")
    st, committed, _ = dec.decode(st, final=True)
    assert dec.starts == [0.0, 0.0] and [w["word"] for w in committed] == ["You", "don't", "mean"]
    assert committed[0]["start"] == 41.1


def test_a_prompted_decode_that_falls_back_past_05_is_decoded_again_without_the_prompt(
    monkeypatch,
):
    """openai-whisper stops conditioning on the previous text after a window that needed
    temperature > 0.5; a stream re-decodes such a buffer without its prompt."""
    import importlib

    T = importlib.import_module("mlx_audio_stack.models.whisper.transcribe")  # noqa: N806
    calls = []

    def fake(audio, model, initial_prompt=None, **kw):
        calls.append(initial_prompt)
        if initial_prompt:  # derailed by the prompt: an invented sentence at T = 1.0
            words = [{"word": " icebergs", "start": 0.0, "end": 0.5, "probability": 0.3}]
            return {"segments": [{"end": 0.5, "temperature": 1.0, "words": words}]}
        words = [{"word": " crayfish", "start": 0.1, "end": 0.6, "probability": 0.9}]
        return {"segments": [{"end": 0.6, "temperature": 0.0, "words": words}]}

    monkeypatch.setattr(T, "transcribe", fake)
    dec = object.__new__(ASRStream)
    dec.cfg, dec.model = PipelineConfig(), None
    st = StreamState("S1", audio=np.zeros(SAMPLE_RATE, np.float32), scrolled_text="One wine")
    words, _ = dec._transcribe(st)
    assert calls == ["One wine", None] and [w.text for w in words] == [" crayfish"]
    calls.clear()  # a decode that held at low temperature is kept as it is
    words, _ = dec._transcribe(replace(st, scrolled_text=""))
    assert calls == [None] and [w.text for w in words] == [" crayfish"]


def _seg(*words):
    return [{"word": t, "start": a, "end": b, "probability": p} for t, a, b, p in words]


def test_invented_segments_are_recognised_by_openai_whispers_rule():
    # the demo's turn-end "Thank you.": p 0.02 and 0.98, 0.08 s a word
    assert _hallucinated(_seg((" Thank", 30.5, 30.58, 0.02), (" you.", 30.58, 30.66, 0.98)))
    # a lone word stretched over 3 s is invented; over 2.8 s not yet (score 0.8 < 1)
    assert _hallucinated(_seg((" so", 1.0, 4.1, 0.4)))
    assert not _hallucinated(_seg((" so", 1.0, 3.8, 0.4)))
    # heard speech: plausible durations and probabilities
    assert not _hallucinated(
        _seg(
            (" greater", 28.8, 29.1, 0.98),
            (" influence", 29.1, 29.6, 1.0),
            (" than", 29.6, 29.8, 0.93),
        )
    )
    # one short, unsure word among good ones is not enough
    assert not _hallucinated(
        _seg(
            (" a", 1.0, 1.05, 0.1),
            (" grain", 1.05, 1.4, 0.9),
            (" or", 1.4, 1.6, 0.9),
            (" two", 1.6, 1.9, 0.9),
        )
    )
    assert not _hallucinated(_seg((" ...", 1.0, 1.0, 0.01)))  # punctuation only: nothing to judge
    # a heard sentence with two 0-s word times (tiny's alignment) scores 3.1 of 4 words: the
    # streams judge by the per-word test alone, which keeps it
    heard = _seg(
        (" Hale,", 1.86, 1.86, 0.49),
        (" you", 2.28, 2.34, 0.99),
        (" have", 2.34, 2.54, 0.97),
        (" done", 2.54, 2.86, 1.0),
        (" quite", 2.86, 3.26, 0.97),
    )
    assert _hallucinated(heard) and not _hallucinated(heard, per_word=True)
    # a long invented tail: every word 0 s long and unsure
    spam = " subscribe press the notification bell to insta now".split(" ")[1:]
    assert _hallucinated(_seg(*[(" " + t, 30.88, 30.88, 0.05) for t in spam]), per_word=True)
    assert _hallucinated(_seg((" Thank", 30.5, 30.58, 0.02), (" you.", 30.58, 30.66, 0.98)), True)


def test_an_invented_tail_keeps_only_its_plausible_words():
    heard = {"end": 2.0, "words": _seg((" one", 0.5, 0.9, 0.9), (" two", 1.0, 1.5, 0.8))}
    digit = {"end": 3.0, "words": _seg((" six,", 2.0, 2.0, 0.001), (" two,", 2.0, 2.0, 0.003))}
    digit["words"] += _seg((" seven.", 2.0, 2.34, 0.241))
    thanks = {"end": 3.0, "words": _seg((" Thank", 2.5, 2.58, 0.02), (" you.", 2.58, 2.66, 0.98))}
    assert _drop_invented_tail([heard]) == [heard]  # nothing invented
    kept = _drop_invented_tail([heard, digit])  # the 8 kHz digit's decode
    assert kept[0] == heard and [w["word"] for w in kept[1]["words"]] == [" seven."]
    assert _drop_invented_tail([heard, thanks]) == [heard]  # every word anomalous: all go
    assert _drop_invented_tail([thanks, heard]) == [thanks, heard]  # only the tail is judged


def test_a_tail_whisper_judged_silent_goes_when_it_has_an_anomaly():
    """The demo's S3: "Thank you." in the 0.3 s window left after the last heard segment,
    no_speech_prob 0.73, "Thank" at p 0.08 (half an anomaly per word: not `_hallucinated`)."""
    heard = {"end": 3.4, "no_speech_prob": 0.001}
    heard["words"] = _seg((" than", 2.56, 2.84, 0.92), (" suspected.", 3.0, 3.4, 0.98))
    thanks = {"end": 3.7, "no_speech_prob": 0.729}
    thanks["words"] = _seg((" Thank", 3.4, 3.52, 0.08), (" you.", 3.52, 3.62, 0.98))
    assert _drop_invented_tail([heard, thanks]) == [heard]
    # Whisper unsure of speech but every word plausible: kept; an anomaly where Whisper heard
    # speech: kept (the per-word rule alone judges it)
    sure = {**thanks, "words": _seg((" Thank", 3.4, 3.7, 0.9), (" you.", 3.7, 4.0, 0.9))}
    assert _drop_invented_tail([heard, sure]) == [heard, sure]
    spoken = {**thanks, "no_speech_prob": 0.3}
    assert _drop_invented_tail([heard, spoken]) == [heard, spoken]


def test_segmenter_cuts_at_pauses_and_at_the_length_limit():
    cfg = PipelineConfig(min_silence_s=0.25, max_piece_s=2.0, speech_pad_s=0.0)
    seg = Segmenter(cfg)
    f = int(round(1.0 / FRAME_S))  # frames per second (31)
    probs = np.concatenate(
        [np.zeros(f), np.ones(f), np.zeros(f), np.ones(3 * f), np.zeros(f)]
    ).astype(np.float32)
    st, pieces = seg.step(seg.initial_state(), probs)
    st, last = seg.finish(st)
    pieces += last
    spans = [(p.start / SAMPLE_RATE, p.end / SAMPLE_RATE) for p in pieces]
    assert spans[0] == pytest.approx((f * FRAME_S, 2 * f * FRAME_S))
    # 3 s of speech: cut at 2 s, then the rest up to the pause
    assert len(spans) == 3
    assert spans[1][1] - spans[1][0] == pytest.approx(2.0, abs=FRAME_S)
    assert spans[2][0] == spans[1][1] and not pieces[2].onset
    assert spans[2][1] == pytest.approx(6 * f * FRAME_S)


def test_segmenter_result_does_not_depend_on_how_frames_arrive():
    rng = np.random.default_rng(0)
    probs = (rng.random(700) > 0.4).astype(np.float32)
    seg = Segmenter(PipelineConfig())
    whole = seg.step(seg.initial_state(), probs)[1]
    st, parts = seg.initial_state(), []
    for i in range(0, probs.size, 7):
        st, p = seg.step(st, probs[i : i + 7])
        parts += p
    assert parts == whole


def test_tracker_keeps_stable_ids_and_respects_max_speakers():
    rng = np.random.default_rng(1)
    centers = np.eye(4, 64)  # four orthogonal "voices"
    tr = SpeakerTracker(threshold=0.6, max_speakers=3, memory=5)
    st = tr.initial_state()
    truth, got = [], []
    for _ in range(60):
        k = int(rng.integers(0, 3))
        e = centers[k] + 0.05 * rng.standard_normal(64)  # cosine to its voice ~0.93
        st, ids, _ = tr.assign(st, e[None], [1.5])
        truth.append(k)
        got.append(ids[0])
    mapping = {}
    for k, g in zip(truth, got):
        mapping.setdefault(k, g)
        assert mapping[k] == g  # the same voice always gets the same id
    assert len(set(got)) == 3
    # a fourth voice with max_speakers 3 opens nothing: it joins an existing speaker
    before = st.counts
    st, ids, news = tr.assign(st, centers[3][None], [3.0])
    assert ids[0] in set(got) and not news[0]
    assert len(st.ids) == 3
    assert st.counts == before  # a forced join leaves the centroids alone
    assert all(r.shape == (5, 64) for r in st.rings)  # fixed-size memory


def test_tracker_short_pieces_do_not_open_speakers():
    tr = SpeakerTracker(threshold=0.6, max_speakers=3, min_new_speaker_s=1.0)
    st, ids, _ = tr.assign(tr.initial_state(), np.eye(2, 8)[:1], [2.0])
    st, ids2, news = tr.assign(st, np.eye(2, 8)[1:], [0.5])  # new voice, too short
    assert ids2 == ids and news == [False]


def test_tracker_separated_sources_never_share_an_id():
    tr = SpeakerTracker(threshold=0.6, max_speakers=3)
    c = np.eye(3, 16)
    st = tr.initial_state()
    st, a, _ = tr.assign(st, c[:1], [2.0])
    st, b, _ = tr.assign(st, c[1:2], [2.0])
    # two sources that both look like speaker a: jointly they must get different ids
    both = np.stack([c[0], 0.9 * c[0] + 0.1 * c[1]])
    st, ids, _ = tr.assign(st, both, [2.0, 2.0], distinct=True)
    assert ids[0] == a[0] and ids[1] != ids[0]


def test_tracker_compares_mixture_pieces_with_separated_ones_across_the_margin():
    """A speaker first heard in a separated window, then in the noisy mixture: the mixture
    piece scores 0.65 against the clean centroid (below the 0.7 threshold, within the
    cross-kind margin of 0.1), so it joins that speaker; without the margin it opened a
    third id, as the 10-minute meeting did."""
    e = np.eye(4, 16)
    piece = 0.65 * e[1] + np.sqrt(1 - 0.65**2) * e[2]  # speaker B as heard in the mixture
    for margin, want in ((0.1, ["S1", "S2", "S2"]), (0.0, ["S1", "S2", "S3"])):
        tr = SpeakerTracker(threshold=0.7, max_speakers=3, cross_margin=margin)
        st, a, _ = tr.assign(tr.initial_state(), e[:1], [2.0])  # A, in the mixture
        st, ab, _ = tr.assign(st, e[:2], [2.0, 2.0], distinct=True)  # A and B, separated
        st, b, _ = tr.assign(st, piece[None], [2.0])
        assert a + ab[1:] + b == want
        assert ab[0] == a[0]
    # each speaker keeps its kinds apart: S2 has only its separated source, S3 the piece
    assert st.centroids(0)[1].tolist() == [True, False, True]
    assert st.centroids(1)[1].tolist() == [True, True, False]


def test_tracker_opens_a_speaker_only_a_margin_below_the_threshold():
    """Between threshold - open_margin and the threshold a piece joins its best speaker
    without moving its centroid; further below it opens a new speaker."""
    e = np.eye(3, 8)
    tr = SpeakerTracker(threshold=0.7, max_speakers=3, open_margin=0.1)
    st, a, _ = tr.assign(tr.initial_state(), e[:1], [2.0])
    near = 0.65 * e[0] + np.sqrt(1 - 0.65**2) * e[1]
    st, ids, news = tr.assign(st, near[None], [2.0])
    assert ids == a and news == [False] and st.counts == (1,)
    far = 0.5 * e[0] + np.sqrt(1 - 0.5**2) * e[2]
    st, ids, news = tr.assign(st, far[None], [2.0])
    assert ids == ["S2"] and news == [True]


def test_tracker_short_pieces_neither_move_centroids_nor_give_the_first_speaker_a_voice():
    """The first piece opens S1 even when short, but only the first long piece gives S1 its
    voice, and a short piece that matches a speaker joins without moving its centroid."""
    e = np.eye(3, 8)
    tr = SpeakerTracker(threshold=0.7, max_speakers=3, min_new_speaker_s=1.5)
    st, ids, news = tr.assign(tr.initial_state(), e[:1], [0.6])  # short: S1, no voice
    assert ids == ["S1"] and news == [True] and st.counts == (0,)
    st, ids, news = tr.assign(st, e[1:2], [2.0])  # long, another voice: it becomes S1's
    assert ids == ["S1"] and news == [False] and st.counts == (1,)
    assert st.centroids(0)[0][0] @ e[1] > 0.99
    st, ids, _ = tr.assign(st, e[1:2], [1.0])  # short and matching: joins, centroid stays
    assert ids == ["S1"] and st.counts == (1,)
    st, ids, news = tr.assign(st, e[2:3], [2.0])  # long and new: S2
    assert ids == ["S2"] and news == [True]


def test_oracle_overlap_and_separator_follow_the_sources():
    n = 10 * VAD_FRAME
    s = np.zeros((2, n), np.float32)
    s[0, : 6 * VAD_FRAME] = 0.1
    s[1, 4 * VAD_FRAME :] = 0.1
    det = OracleOverlap(s)
    _, probs = det.step(det.initial_state(), np.zeros(n, np.float32))
    assert probs.argmax(axis=1).tolist() == [1, 1, 1, 1, 2, 2, 1, 1, 1, 1]
    sep = OracleSeparator(s)
    out = sep(np.zeros(100, np.float32), 5 * VAD_FRAME)
    np.testing.assert_array_equal(out, s[:, 5 * VAD_FRAME : 5 * VAD_FRAME + 100])


def test_pcm_chunks_resample_and_drop_a_dangling_byte(capsys):
    t = np.arange(8000) / 8000
    x = (0.5 * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2")
    raw = x.tobytes() + b"\x01"  # cut mid-sample
    y = np.concatenate(list(pcm_chunks(io.BytesIO(raw), rate=8000, chunk_s=0.25)))
    assert abs(y.size - 16000) <= 16
    assert "1 byte dropped" in capsys.readouterr().err
    # the tone survives resampling (peak near 0.5 at 440 Hz)
    spec = np.abs(np.fft.rfft(y[2000:14000]))
    assert abs(np.argmax(spec) * SAMPLE_RATE / 12000 - 440) < 5


def test_turns_merge_and_outputs_render():
    turns = _merge_turns([("S1", 0.0, 2.0), ("S1", 2.0, 3.0), ("S2", 2.5, 4.0), ("S1", 5.0, 6.0)])
    assert turns == [("S1", 0.0, 3.0), ("S2", 2.5, 4.0), ("S1", 5.0, 6.0)]
    text = rttm(turns, "m 1")
    assert text.splitlines()[1] == "SPEAKER m_1 1 2.500 1.500 <NA> <NA> S2 <NA> <NA>"
    words = [
        {"speaker": "S1", "word": "hi", "start": 0.0, "end": 0.2},
        {"speaker": "S2", "word": "yo", "start": 0.3, "end": 0.5},
        {"speaker": "S1", "word": "there", "start": 0.6, "end": 0.9},
    ]
    assert [c[2] for c in cues(words)] == ["[S1] hi", "[S2] yo", "[S1] there"]


def test_a_piece_is_cut_at_its_overlapped_run():
    from mlx_audio_stack.pipeline.overlap import split_by_overlap
    from mlx_audio_stack.pipeline.stages import Piece

    cfg = PipelineConfig(overlap_min_s=0.2, overlap_bridge_s=0.3)
    n = 62  # ~2 s of 32 ms frames
    counts = np.ones(n, np.int64)
    counts[31:47] = 2  # 0.5 s of two speakers in the middle
    counts[10] = 2  # one stray frame: too short to count
    ov = np.eye(4, dtype=np.float32)[counts]
    piece = Piece(0, n * VAD_FRAME, True)
    parts = split_by_overlap(piece, ov, FRAME_S, cfg)
    assert [(p.start, p.end, c) for p, c in parts] == [
        (0, 31 * VAD_FRAME, 1),
        (31 * VAD_FRAME, 47 * VAD_FRAME, 2),
        (47 * VAD_FRAME, n * VAD_FRAME, 1),
    ]
    assert parts[0][0].onset and not parts[2][0].onset
    # an overlap near the end swallows the short remainder
    counts[:] = 1
    counts[50:60] = 3
    parts = split_by_overlap(piece, np.eye(4, dtype=np.float32)[counts], FRAME_S, cfg)
    assert [(p.start, p.end, c) for p, c in parts] == [
        (0, 50 * VAD_FRAME, 1),
        (50 * VAD_FRAME, n * VAD_FRAME, 3),
    ]
    # no overlap: the piece as it is
    assert split_by_overlap(piece, np.eye(4, dtype=np.float32)[np.ones(n, int)], FRAME_S, cfg) == [
        (piece, 1)
    ]


def _tiny_separator(num_spks):
    import mlx.core as mx

    from mlx_audio_stack.models.mossformer2.model import ModelArgs, MossFormer2

    mx.random.seed(0)
    return MossFormer2(
        ModelArgs(
            num_spks=num_spks,
            encoder_embedding_dim=32,
            mossformer_sequence_dim=32,
            num_mossformer_layer=1,
        )
    )


def test_the_separator_is_chosen_by_how_many_voices_were_counted(tmp_path, monkeypatch):
    """With a 2- and a 3-source MossFormer2 converted (random weights, tiny), the default
    loads both and a piece goes to the one that separates as many voices as were counted;
    with the 2-source one only, three voices go to it, noted once. The WHAMR! 2-source model
    after the plain one in SEPARATOR_DEFAULTS is not loaded beside it."""
    from mlx.utils import tree_flatten

    from mlx_audio_stack.pipeline.components import load_separator
    from mlx_audio_stack.weights_io import save_model_dir

    def convert(name, n, scale=1.0):
        m = _tiny_separator(n)
        w = {k: v * scale for k, v in tree_flatten(m.parameters())}
        save_model_dir(tmp_path / name, w, {"model_type": "mossformer2", "args": m.args.to_dict()})

    monkeypatch.setenv("MAS_WEIGHTS_DIR", str(tmp_path))
    convert("mossformer2-ss-16k", 2)
    convert("mossformer2-whamr-16k", 2, scale=2.0)
    audio = np.random.default_rng(0).standard_normal(8000).astype(np.float32) * 0.1
    notes = []
    stage = load_separator(None, notes.append)
    assert sorted(stage.models) == [2]
    assert stage(audio, 0, 3).shape == (2, 8000) and stage(audio, 0, 3).shape == (2, 8000)
    assert len(notes) == 1 and "3 voices at once" in notes[0]
    convert("mossformer2-ss-16k-3spk", 3)
    stage = load_separator(None, notes.append)
    assert sorted(stage.models) == [2, 3]
    assert stage(audio, 0, 2).shape == (2, 8000) and stage(audio, 0, 3).shape == (3, 8000)
    # the plain 2-source model, not the WHAMR! one (its weights are doubled here)
    w = dict(tree_flatten(stage.models[2].parameters()))["enc.conv1d.weight"]
    assert np.array_equal(np.array(w), np.array(_tiny_separator(2).enc.conv1d.weight))
    assert len(notes) == 1  # nothing more to say


def test_a_loaded_separation_model_is_wrapped_as_the_stage():
    from mlx_audio_stack.models.mossformer2.model import ModelArgs, MossFormer2
    from mlx_audio_stack.pipeline.components import load_separator
    from mlx_audio_stack.pipeline.stages import OracleSeparator, Separator

    tiny = MossFormer2(
        ModelArgs(encoder_embedding_dim=32, mossformer_sequence_dim=32, num_mossformer_layer=1)
    )
    stage = load_separator(tiny, print)
    assert isinstance(stage, Separator) and stage.models == {2: tiny}
    oracle = OracleSeparator(np.zeros((2, 10), np.float32))
    assert load_separator(oracle, print) is oracle  # a stage object is used as it is
