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
    rate = tool.rate_records(shared_data)
    assert len(rate) == 105
    for r in rate:
        wps = len(r["text"].split()) / r["duration"]
        assert r["labels"]["speaking_rate"] == taxonomy.speaking_rate(len(r["text"].split()),
                                                                      r["duration"])  # fmt: skip
        assert abs(r["extra"]["words_per_second"] - wps) < 1e-3


def test_rate_split_is_stratified_and_refuses_when_impossible(tool):
    from collections import Counter

    counts = {f"s{i}": Counter({"fast": 3 + i % 3, "slow": 2 + (i + 1) % 3, "normal": 5})
              for i in range(9)}  # fmt: skip
    split = tool.rate_split(counts, 10, 0.1)
    assert split == tool.rate_split(counts, 10, 0.1)  # deterministic
    tot = {k: Counter() for k in ("train", "valid", "test")}
    for s, k in split.items():
        tot[k] += counts[s]
    assert min(tot["train"].values()) >= 10
    for k in ("valid", "test"):
        assert sum(v == k for v in split.values()) >= 2 and sum(tot[k].values()) >= 15
        frac = {c: tot[k][c] / sum(tot[k].values()) for c in tot["train"]}
        ftr = {c: tot["train"][c] / sum(tot["train"].values()) for c in tot["train"]}
        assert 0.5 * sum(abs(frac[c] - ftr[c]) for c in ftr) <= 0.1
    # one speaker talks fast, the rest slowly: no split has fast clips in train and test alike
    skew = {f"s{i}": Counter({"slow": 10}) for i in range(6)} | {"f": Counter({"fast": 30})}
    with pytest.raises(SystemExit, match="drift"):
        tool.rate_split(skew, 10, 0.1)


def test_rate_manifest_passes_qa(tool, shared_data, tmp_path):
    """The speaking-rate manifest of all 12 transcribed LibriSpeech speakers passes the QA
    suite with the task's own profile (no override): it failed balance.min_count and
    drift.tvd with a hash split of the speakers."""
    from mlx_audio_stack.data.manifest import write_manifest
    from mlx_audio_stack.data.qa import run_qa

    m = write_manifest(tool.rate_records(shared_data), tmp_path / "speaking_rate.jsonl")
    r = run_qa(m, "speaking_rate", progress=False, plots=False, record=False)
    assert r.passed, [f.line() for f in r.findings if f.severity == "error"]
    assert not [f for f in r.findings if f.check.startswith(("balance", "drift"))]


def test_eval_heads_keeps_the_other_tools_sections(tmp_path):
    """tools/eval_heads.py rewrites reports/heads.md; the sections other tools keep there
    between their markers survive it (a rerun once dropped the distillation sections), and
    a speaker-count-only run keeps the gender section, marked as not re-run."""
    mod = load_tool("eval_heads")
    report = tmp_path / "heads.md"
    bench = (
        "<!-- heads-parallel: tools/bench_heads_parallel.py -->\n## Bench\nx\n"
        "<!-- /heads-parallel -->"
    )
    report.write_text(
        "# Heads\n\n## Gender (held-out)\n\nTest: accuracy **0.955**.\n\n| seed | gender |\n"
        f"|---|---|\n\n## Speaker count\n\ny\n\n{bench}\n"
    )
    assert mod.other_tools_sections(report) == [bench]
    kept = mod.kept_gender(report)
    assert kept[0] == "## Gender (held-out)" and "Not re-run" in kept[2]
    assert "Test: accuracy **0.955**." in kept and not any("seed" in x for x in kept)
    report.write_text("\n".join(kept) + "\n")  # a second run does not stack the note
    assert sum("Not re-run" in x for x in mod.kept_gender(report)) == 1
