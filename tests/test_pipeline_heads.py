"""Trained Whisper heads' speaker-count task as the pipeline's overlap stage (`--overlap
HEADS`). The heads here have random weights: these tests check the plumbing (frame timing,
chunking, loading, refusals), not detection quality (reports/pipeline.md measures that)."""

from __future__ import annotations

import numpy as np
import pytest

from mlx_audio_stack.data.taxonomy import TASKS
from mlx_audio_stack.errors import WeightsError
from mlx_audio_stack.heads import save_heads
from mlx_audio_stack.heads.infer import predict_heads
from mlx_audio_stack.heads.model import HeadsArgs, TaskSpec, WhisperHeads
from mlx_audio_stack.pipeline.overlap import HeadsOverlap, heads_overlap


@pytest.fixture(scope="module")
def tiny_dir(offline_weights, monkeypatch_module):
    path = offline_weights("whisper-tiny.en")
    monkeypatch_module.setenv("MAS_WEIGHTS_DIR", str(path.parent))  # heads find their encoder
    return path


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


@pytest.fixture(scope="module")
def tiny(tiny_dir):
    from mlx_audio_stack.models.whisper.load import load_cached

    return load_cached(str(tiny_dir))


def _heads(tiny, tasks=("speaker_count",)):
    d = tiny.dims
    specs = [TaskSpec.from_taxonomy(t) for t in tasks]
    return WhisperHeads(HeadsArgs(d.n_audio_layer, d.n_audio_state, 8, 5, specs))


def _run(det, x, chunk):
    st, out = det.initial_state(), []
    for i in range(0, x.size, chunk):
        st, p = det.step(st, x[i : i + chunk])
        out.append(p)
    st, p = det.finish(st)
    return np.concatenate(out + [p])


def test_frames_cover_the_input_whatever_the_chunks(tiny):
    rng = np.random.default_rng(0)
    x = (0.1 * rng.standard_normal(int(7.35 * 16000))).astype(np.float32)
    det = HeadsOverlap(_heads(tiny), tiny, hop_s=2.0, lookahead_s=1.0)
    a = _run(det, x, 8000)
    b = _run(det, x, 3001)
    assert a.shape == (74, 4)  # ceil(7.35 / 0.1) frames of P(0..3)
    np.testing.assert_allclose(a.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(a, b)


def test_one_pass_equals_mas_heads_predict(tiny, tiny_dir):
    """With the pass at the end of the input, the frames are those of `predict_heads`."""
    rng = np.random.default_rng(1)
    x = (0.1 * rng.standard_normal(5 * 16000 + 700)).astype(np.float32)
    heads = _heads(tiny)
    det = HeadsOverlap(heads, tiny, hop_s=60.0)
    got = _run(det, x, 16000)
    ref = predict_heads(x, heads, model=tiny_dir)
    want = np.array(ref["frames"]["speaker_count"]["probs"], np.float32)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_a_heads_folder_loads_with_its_encoder_and_bad_ones_are_refused(tiny, tmp_path):
    good = save_heads(_heads(tiny), tmp_path / "h", {"encoder": {"model": "whisper-tiny.en"}})
    det = heads_overlap(good)
    assert det.encoder_name == "whisper-tiny.en" and det.frame_s == pytest.approx(0.1)
    no_count = save_heads(
        _heads(tiny, ("gender",)), tmp_path / "g", {"encoder": {"model": "whisper-tiny.en"}}
    )
    with pytest.raises(WeightsError, match="speaker_count"):
        heads_overlap(no_count)
    elsewhere = save_heads(_heads(tiny), tmp_path / "x", {"encoder": {"model": "whisper-nope"}})
    with pytest.raises(WeightsError, match="whisper-nope"):
        heads_overlap(elsewhere)
    assert TASKS["speaker_count"].frame_level


def test_count_heads_under_weights_are_the_default_detector(tiny, tiny_dir, tmp_path, monkeypatch):
    """The issue: the heads' speaker-count head is the overlap detector when its weights are
    there. weights/heads-* with a speaker_count task and its encoder present is picked
    (noted); heads without that task or without their encoder are passed over; `counter`
    keeps the shipped counter; with none there, the counter it is."""
    from mlx_audio_stack.pipeline.components import count_heads_folders, load_overlap

    root = tmp_path / "weights"
    root.mkdir()
    monkeypatch.setenv("MAS_WEIGHTS_DIR", str(root))
    notes: list[str] = []
    assert count_heads_folders() == []
    assert type(load_overlap(None, notes.append)).__name__ == "CounterOverlap"
    (root / "whisper-tiny.en").symlink_to(tiny_dir)
    enc = {"encoder": {"model": "whisper-tiny.en"}}
    save_heads(_heads(tiny, ("gender",)), root / "heads-a", enc)
    save_heads(_heads(tiny), root / "heads-b", {"encoder": {"model": "whisper-nope"}})
    save_heads(_heads(tiny), root / "heads-c", enc)
    assert count_heads_folders() == [root / "heads-c"]
    det = load_overlap(None, notes.append)
    assert isinstance(det, HeadsOverlap) and det.encoder_name == "whisper-tiny.en"
    assert any("heads-c" in n for n in notes)
    assert type(load_overlap("counter", notes.append)).__name__ == "CounterOverlap"
    # a broken default (weights cut short) is passed over with a note, not a failed run
    (root / "heads-c" / "model.safetensors").write_bytes(b"broken")
    notes.clear()
    assert type(load_overlap(None, notes.append)).__name__ == "CounterOverlap"
    assert any("heads-c not used" in n for n in notes), notes


def test_memory_stays_one_window_over_a_long_input(tiny):
    det = HeadsOverlap(_heads(tiny), tiny, hop_s=10.0, lookahead_s=1.0)
    st, n = det.initial_state(), 0
    x = np.zeros(16000, np.float32)
    for _ in range(65):  # 65 s in 1 s chunks
        st, p = det.step(st, x)
        n += p.shape[0]
        assert st.audio.size <= 31 * 16000
    st, p = det.finish(st)
    assert n + p.shape[0] == 650 and st.passes == 7


def test_the_pipeline_runs_with_heads_as_its_overlap_stage(tiny_dir, offline_weights, tmp_path):
    from mlx_audio_stack.pipeline import run_pipeline
    from mlx_audio_stack.pipeline.demo import demo_meeting

    hdir = save_heads(_heads_for(tiny_dir), tmp_path / "h", {"encoder": {"model": tiny_dir.name}})
    mix = demo_meeting().mix[: 8 * 16000]
    notes = []
    res = run_pipeline(
        mix,
        whisper=tiny_dir,
        vad=offline_weights("silero-vad"),
        embedder=False,
        separator=False,
        overlap=str(hdir),
        log=notes.append,
    )
    assert res.components["overlap"] == "speaker-count heads"
    assert any("speaker-count heads" in n for n in notes)
    assert res.overlap_frames.size == 80  # one per 0.1 s frame of the 8 s
    assert res.words  # the transcript is there


def _heads_for(tiny_dir):
    from mlx_audio_stack.models.whisper.load import load_cached

    return _heads(load_cached(str(tiny_dir)))
