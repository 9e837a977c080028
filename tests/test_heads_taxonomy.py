"""The heads' label taxonomy: emotion2vec+'s emotion classes, AudioSet-named paralinguistic
events, speaking rate; class indices identical in fresh processes under any hash seed."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from mlx_audio_stack.data import taxonomy
from mlx_audio_stack.data.taxonomy import TaxonomyError

HEAD_TASKS = ("emotion", "paralinguistic", "speaker_count", "gender", "speaking_rate")


def test_emotion_is_emotion2vec_plus_order():
    assert taxonomy.classes("emotion") == (
        "angry", "disgusted", "fearful", "happy", "neutral", "other", "sad", "surprised", "unknown"
    )  # fmt: skip
    # RAVDESS names and CREMA-D / IEMOCAP codes still map
    for raw, want in [("DIS", "disgusted"), ("disgust", "disgusted"), ("calm", "neutral"),
                      ("<unk>", "unknown"), ("exc", "happy"), ("fru", "other")]:  # fmt: skip
        assert taxonomy.normalize("emotion", raw) == want


def test_paralinguistic_audioset_names():
    cls = taxonomy.classes("paralinguistic")
    assert 45 <= len(cls) <= 60 and len(set(cls)) == len(cls)
    assert set(cls) == set(taxonomy.AUDIOSET_NAMES)
    assert cls[:2] == ("speech", "male_speech")  # append-only: the first classes never move
    # AudioSet display names and their parts normalize to the class key
    assert taxonomy.normalize("paralinguistic", "Throat clearing") == "throat_clearing"
    assert taxonomy.normalize("paralinguistic", "Hubbub, speech noise, speech babble") == "babble"
    assert taxonomy.normalize("paralinguistic", "Crying, sobbing") == "crying"
    assert taxonomy.normalize("paralinguistic", "throat_clear") == "throat_clearing"  # old name
    hot = taxonomy.multi_hot("paralinguistic", ["Laughter", "cough", "laughter"])
    assert sum(hot) == 2 and hot[cls.index("laughter")] == 1 and hot[cls.index("cough")] == 1
    with pytest.raises(TaxonomyError, match="not in the taxonomy"):
        taxonomy.multi_hot("paralinguistic", ["doorbell"])
    assert taxonomy.get_task("paralinguistic").multi_label
    assert taxonomy.get_task("speaker_count").frame_level


def test_speaking_rate_thresholds():
    assert taxonomy.speaking_rate(20, 10.0) == "slow"  # 2.0 w/s
    assert taxonomy.speaking_rate(25, 10.0) == "normal"
    assert taxonomy.speaking_rate(30, 10.0) == "fast"
    assert taxonomy.speaking_rate(int(taxonomy.FAST_WPS * 100), 100.0) == "normal"  # inclusive
    with pytest.raises(TaxonomyError):
        taxonomy.speaking_rate(3, 0.0)
    assert taxonomy.classes("speaking_rate") == ("slow", "normal", "fast")


def test_indices_stable_across_hash_seeds():
    code = (
        "import json, mlx_audio_stack.data.taxonomy as t;"
        f"print(json.dumps({{k: t.mapping(k) for k in {HEAD_TASKS!r}}}))"
    )
    outs = []
    for seed in ("0", "1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        r = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
        )
        outs.append(json.loads(r.stdout))
    assert outs[0] == outs[1] == outs[2]
    here = {k: taxonomy.mapping(k) for k in HEAD_TASKS}
    assert outs[0] == here
    assert outs[0]["emotion"]["sad"] == 6 and outs[0]["speaker_count"]["3"] == 3
