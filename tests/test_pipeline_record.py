"""The event record (in memory or spooled to a file) and the detector frames a long run keeps,
with known answers (no model weights needed)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mlx_audio_stack.errors import MasError
from mlx_audio_stack.pipeline.config import FRAME_S, VAD_FRAME, PipelineConfig
from mlx_audio_stack.pipeline.overlap import split_by_overlap
from mlx_audio_stack.pipeline.record import EventRecord, spool_for
from mlx_audio_stack.pipeline.stages import Piece

EVENTS = [
    {"type": "speaker", "speaker": "S1", "start": 0.5, "end": 2.0},
    {"type": "final", "speaker": "S1", "text": "naïve café", "words": [{"word": "naïve"}]},
    {"type": "partial", "speaker": "S1", "text": "x", "words": []},
]


def test_a_spooled_record_reads_back_what_memory_would_keep(tmp_path):
    mem, spool = EventRecord(), spool_for(tmp_path / "out")
    for rec in (mem, spool):
        rec.extend(EVENTS[:2])
        rec.extend([])
        rec.extend(EVENTS[2:])
    assert list(mem) == list(spool) == EVENTS and len(mem) == len(spool) == 3
    assert not mem.spooled and spool.spooled
    # the spool is a hidden temporary sibling of events.jsonl, written as decided
    assert spool.path.name.startswith(".events.jsonl.tmp-")
    assert spool.path.read_text(encoding="utf-8").count("\n") == 3
    assert not (tmp_path / "out" / "events.jsonl").exists()
    final = spool.commit(tmp_path / "out" / "events.jsonl")
    assert [json.loads(x) for x in final.read_text(encoding="utf-8").splitlines()] == EVENTS
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["events.jsonl"]
    assert list(spool) == EVENTS  # reads from the committed file now
    spool.discard()  # committed: left alone
    assert final.exists()
    with pytest.raises(MasError, match="closed"):
        spool.extend(EVENTS)
    # an in-memory record commits by writing; a spool elsewhere is copied in
    mem.commit(tmp_path / "m" / "events.jsonl")
    assert (tmp_path / "m" / "events.jsonl").read_text(encoding="utf-8") == final.read_text(
        encoding="utf-8"
    )
    other = EventRecord(tmp_path / "elsewhere.jsonl")
    other.extend(EVENTS)
    other.commit(tmp_path / "c" / "events.jsonl")
    assert (tmp_path / "c" / "events.jsonl").read_text(encoding="utf-8") == final.read_text(
        encoding="utf-8"
    )


def test_a_discarded_spool_leaves_nothing_behind(tmp_path):
    rec = spool_for(tmp_path / "new" / "out")
    rec.extend(EVENTS)
    rec.discard()
    assert not (tmp_path / "new" / "out").exists()  # the folder it made, empty again
    keep = tmp_path / "kept"
    keep.mkdir()
    (keep / "other.txt").write_text("x")
    rec = spool_for(keep)
    rec.discard()
    assert sorted(p.name for p in keep.iterdir()) == ["other.txt"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(MasError, match="not a folder"):
        spool_for(tmp_path / "file")


def test_overlap_frames_from_an_offset_cut_a_piece_as_the_whole_stream_does():
    """A long run keeps only the detector frames of the audio it still holds: the piece must
    be cut the same from those frames (`first` = the stream index of the first kept one)."""
    cfg = PipelineConfig(overlap_min_s=0.2, overlap_bridge_s=0.3)
    rng = np.random.default_rng(0)
    counts = np.ones(900, np.int64)
    for a in rng.integers(0, 880, 25):
        counts[a : a + rng.integers(3, 20)] = rng.integers(2, 4)
    ov = np.eye(4, dtype=np.float32)[counts]
    cuts = 0
    for start in range(300, 850, 37):
        piece = Piece(start * VAD_FRAME + 100, (start + 45) * VAD_FRAME, True)
        whole = split_by_overlap(piece, ov, FRAME_S, cfg)
        cuts += len(whole) > 1
        for first in (0, start - 200, start - 1, start):
            assert split_by_overlap(piece, ov[first:], FRAME_S, cfg, first) == whole
    assert cuts >= 5  # the comparison saw pieces with overlapped runs
