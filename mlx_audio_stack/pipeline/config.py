"""The pipeline's settings, in one dataclass (every field has a CLI flag or a sensible default)."""

from __future__ import annotations

from dataclasses import dataclass

SAMPLE_RATE = 16000  # every stage runs at 16 kHz mono
VAD_FRAME = 512  # Silero's chunk at 16 kHz: 32 ms
FRAME_S = VAD_FRAME / SAMPLE_RATE  # 0.032 s per VAD frame


@dataclass
class PipelineConfig:
    """Knobs of the multi-speaker pipeline. Times are in seconds."""

    max_speakers: int = 3
    # VAD (Silero, 32 ms frames) with hysteresis, as silero's get_speech_timestamps
    vad_threshold: float = 0.5
    vad_neg_threshold: float = 0.35
    min_silence_s: float = 0.25  # a pause this long ends a speech piece
    speech_pad_s: float = 0.1  # kept on each side of a piece
    # speech pieces: the unit that is embedded, tracked and routed to one speaker's stream
    max_piece_s: float = 2.0  # a longer run of speech is cut (a speaker change inside is found)
    min_embed_s: float = 0.5  # shorter pieces are not embedded: they go to the last speaker
    # a new speaker is only opened from a piece this long, and only pieces this long move a
    # speaker's centroid (shorter ones join without)
    min_new_speaker_s: float = 1.5
    # tracker: cosine similarity to speaker centroids; None = the embedder's own threshold
    tracker_threshold: float | None = None
    # a piece below the threshold opens a new speaker only when it scores this much below it
    # (in between it joins its best speaker without moving the centroid)
    new_speaker_margin: float = 0.02
    centroid_memory: int = 30  # a centroid is the mean of at most this many recent pieces
    # a separated source scores against a speaker's mixture-piece centroid (and the other way
    # round) with this added: the gap measured between the two kinds (pipeline/tracker.py)
    cross_source_margin: float = 0.1
    # overlap: a run of frames saying >= 2 speakers, at least this long, is cut out of its
    # piece and goes to separation (runs closer than overlap_bridge_s are joined)
    overlap_min_s: float = 0.2
    overlap_bridge_s: float = 0.3
    # P(>= 2 speakers) for a frame to count: separation costs ~6 s a second, so precision
    # first. The shipped counter's own F1 threshold (0.45) flagged every piece of the demo
    # meeting; at 0.8 its frames had precision 0.5 and recall 0.4 there (0.7: 0.15 / 0.8)
    overlap_threshold: float = 0.8
    separation_context_s: float = 0.5  # audio either side of an overlapped piece, for the separator
    source_min_rms_db: float = -35.0  # a separated source this far below the mix is empty
    # ASR streams (LocalAgreement-2, whisper_streaming)
    min_chunk_s: float = 1.0  # decode a speaker's buffer when this much new audio arrived
    buffer_trim_s: float = 15.0  # trim the buffer at the last committed word beyond this
    max_buffer_s: float = 28.0  # Whisper sees 30 s: past this, commit what is old enough
    # a final decode whose words end this long before the buffer does decodes the rest alone,
    # and an uncommitted stretch this long with fewer words than min_words_per_s is decoded
    # again alone (speech runs at 2-3 words a second)
    tail_redecode_s: float = 1.0
    min_words_per_s: float = 1.0
    # a stretch this long between two words about to be committed (or after the last committed
    # word) that holds no word is speech Whisper skipped: decoded alone before it is committed
    hole_redecode_s: float = 1.5
    # a word longer than this was stretched over the skipped speech ("the" over 5.8-8.0 s):
    # the stretch then counts from its start + this, and is decoded from the word's start
    max_word_s: float = 1.0
    prompt_chars: int = 200  # committed text scrolled out of the buffer, given as prompt
    gap_s: float = 0.3  # silence inserted between a speaker's non-adjacent pieces
    temperature: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    beam_size: int | None = None  # None: greedy
    language: str | None = None
    partials: bool = True  # emit partial events (uncommitted hypotheses)
