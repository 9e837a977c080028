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


def _result(speakers: dict[str, str], events=None):
    """A PipelineResult with known contents (no model run), for the output writer."""
    from mlx_audio_stack.pipeline.driver import PipelineResult

    words = [
        {"word": t.split()[0], "start": 1.0 + i, "end": 1.4 + i, "speaker": s, "probability": 0.9}
        for i, (s, t) in enumerate(speakers.items())
    ]
    return PipelineResult(
        transcripts=dict(speakers),
        words=words,
        turns=[(w["speaker"], w["start"], w["end"]) for w in words],
        events=events if events is not None else [{"type": "final", "speaker": "S1"}],
        overlap_frames=np.zeros(10, np.int64),
        frame_s=0.032,
        stats={
            "audio_s": 5.0,
            "wall_s": 1.0,
            "rtf": 0.2,
            "peak_rss_mb": 100.0,
            "decodes": 1,
            "stage_s": {},
        },
        latency=[],
    )


def test_a_run_into_a_used_folder_leaves_only_its_own_outputs(tmp_path):
    """A second run into the same folder: the first run's third speaker and its other-name
    rttm/srt/vtt must not stay beside the new files; files that are not a run's stay."""
    from mlx_audio_stack.pipeline.outputs import MANIFEST, write_outputs

    out = tmp_path / "out"
    write_outputs(_result({"S1": "one", "S2": "two", "S3": "three"}), out, "demo")
    (out / "notes.txt").write_text("mine")
    (out / "notes.md").write_text("mine")  # of a kind a run writes, but not this run's
    (out / "talk.srt").write_text("mine")
    assert sorted(p.name for p in (out / "speakers").iterdir()) == ["S1.txt", "S2.txt", "S3.txt"]
    write_outputs(_result({"S1": "alone"}), out, "silence")
    assert sorted(p.name for p in (out / "speakers").iterdir()) == ["S1.txt"]
    assert (out / "speakers" / "S1.txt").read_text() == "alone\n"
    names = sorted(p.name for p in out.iterdir())
    expected = ["events.jsonl", "notes.md", "notes.txt", "report.md", "silence.rttm"]
    expected += ["silence.srt", "silence.vtt", "speakers", "talk.srt"]
    assert [n for n in names if n not in (MANIFEST, "timeline.png")] == expected, names
    assert "SPEAKER silence 1" in (out / "silence.rttm").read_text()


def test_outputs_without_matplotlib_say_so_and_drop_the_last_runs_timeline(tmp_path, monkeypatch):
    """timeline.png needs matplotlib: without it the run's report says so (no silent gap),
    and the timeline an earlier run wrote there does not stay as if it were this run's; a
    timeline.png no run wrote (no manifest names it) stays."""
    pytest.importorskip("matplotlib")
    import builtins

    from mlx_audio_stack.pipeline.outputs import NO_TIMELINE, write_outputs

    out = tmp_path / "out"
    write_outputs(_result({"S1": "one"}), out)
    assert (out / "timeline.png").stat().st_size > 0
    real_import = builtins.__import__

    def no_matplotlib(name, *a, **k):
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    res = _result({"S1": "one"})
    write_outputs(res, out)
    assert NO_TIMELINE in res.notes and NO_TIMELINE in (out / "report.md").read_text()
    assert not (out / "timeline.png").exists()
    assert not [p for p in out.iterdir() if ".tmp-" in p.name]
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "timeline.png").write_bytes(b"mine")
    write_outputs(_result({"S1": "one"}), mine)
    assert (mine / "timeline.png").read_bytes() == b"mine"


def test_a_planted_manifest_removes_only_a_runs_own_kinds_of_file(tmp_path):
    """.mas-outputs is read from the folder, so it may be copied or planted: it can only name
    timeline.png and whole NAME.rttm/.srt/.vtt trios for removal, nothing else."""
    from mlx_audio_stack.pipeline.outputs import MANIFEST, write_outputs

    out = tmp_path / "out"
    out.mkdir()
    mine = ["README.md", "thesis.png", "data.jsonl", "a.srt", "../x.rttm"]
    trio = ["b.rttm", "b.srt", "b.vtt"]
    for n in mine[:4] + trio:
        (out / n).write_text("x")
    (tmp_path / "x.rttm").write_text("x")
    (out / MANIFEST).write_text("\n".join(mine + trio + ["speakers/S1.txt"]))
    write_outputs(_result({"S1": "one"}), out)
    assert all((out / n).exists() for n in mine[:4]) and (tmp_path / "x.rttm").exists()
    assert not any((out / n).exists() for n in trio)


def test_a_timeline_that_fails_to_draw_costs_only_itself(tmp_path, monkeypatch):
    from mlx_audio_stack.pipeline import outputs

    def broken(res, path):
        raise RuntimeError("no backend")

    monkeypatch.setattr(outputs, "timeline_png", broken)
    res = _result({"S1": "one"})
    out = outputs.write_outputs(res, tmp_path / "out")
    assert (out / "report.md").exists() and not (out / "timeline.png").exists()
    assert any("no backend" in n for n in res.notes)
    assert not [p for p in out.iterdir() if ".tmp-" in p.name]


def test_outputs_have_the_modes_of_plain_files(tmp_path):
    """Every output, timeline.png too, gets the mode open() would give (it was 0600)."""
    pytest.importorskip("matplotlib")
    from mlx_audio_stack.atomic import umask_mode
    from mlx_audio_stack.pipeline.outputs import write_outputs

    out = write_outputs(_result({"S1": "one"}), tmp_path / "out")
    for f in ("timeline.png", "report.md", "events.jsonl", "meeting.rttm", "speakers/S1.txt"):
        assert (out / f).stat().st_mode & 0o777 == umask_mode(False), f


def test_outputs_into_a_relative_folder_with_a_spooled_record(tmp_path, monkeypatch):
    """`mas pipeline meeting.wav --out out/` (the README's first pipeline command): the spool
    and the temporaries named the folder "out" and "/cwd/out"; the group commit took them for
    two folders and the run failed at its very end."""
    from mlx_audio_stack.pipeline.outputs import write_outputs

    monkeypatch.chdir(tmp_path)
    record = spool_for("out/")
    record.extend(EVENTS)
    res = _result({"S1": "one"}, events=record)
    write_outputs(res, "out/", "meeting")
    assert [
        json.loads(x) for x in (tmp_path / "out" / "events.jsonl").read_text().splitlines()
    ] == EVENTS
    assert (tmp_path / "out" / "speakers" / "S1.txt").read_text() == "one\n"
    assert not [p for p in (tmp_path / "out").iterdir() if ".tmp-" in p.name]
