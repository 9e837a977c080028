"""tools/make_heads_data.py on the shared real-speech data: held-out speakers, labels that
follow from the corpus metadata and transcripts."""

from __future__ import annotations

import pytest
from _helpers import load_tool

from mlx_audio_stack.data import taxonomy
from mlx_audio_stack.evaluation import count_mixtures as simulate


@pytest.fixture(scope="module")
def tool():
    return load_tool("make_heads_data")


def test_speaker_split_keeps_the_counters_held_out_speakers(tool):
    for s in simulate.TEST_SPEAKERS:
        assert tool.speaker_split(s) == "test"
    for s in simulate.VALID_SPEAKERS:
        assert tool.speaker_split(s) == "valid"
    splits = [tool.speaker_split(str(i)) for i in range(1000, 3000)]
    assert 0.15 < splits.count("test") / len(splits) < 0.25
    assert splits == [tool.speaker_split(str(i)) for i in range(1000, 3000)]  # stable


def test_gender_and_rate_records(tool, shared_data):
    recs = tool.gender_records(shared_data, 2, 0)
    spk_split: dict[str, set] = {}
    for r in recs:
        spk_split.setdefault(r["speaker"], set()).add(r["split"])
        assert set(r["labels"]) == {"gender"}
    assert all(len(s) == 1 for s in spk_split.values())  # held-out speakers
    by_id = {r["id"]: r for r in recs}
    # SPEAKERS.TXT: 1089 M (test-clean), 2412 F (dev-clean); FSDD: jackson male
    assert by_id["1089-134686-0000"]["labels"]["gender"] == "male"
    assert by_id["1089-134686-0000"]["split"] == "test"
    assert any(r["speaker"] == "2412" and r["labels"]["gender"] == "female" for r in recs)
    assert sum(r["dataset"] == "fsdd" for r in recs) == 2 * 6
    rate = tool.rate_records(shared_data, 0)
    assert len(rate) == 105
    for r in rate:
        wps = len(r["text"].split()) / r["duration"]
        assert r["labels"]["speaking_rate"] == taxonomy.speaking_rate(len(r["text"].split()),
                                                                      r["duration"])  # fmt: skip
        assert abs(r["extra"]["words_per_second"] - wps) < 1e-3
