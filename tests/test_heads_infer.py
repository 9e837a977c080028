"""Heads at inference on a tiny random Whisper: `transcribe(heads=...)` adds per-segment outputs
from the encoder pass that decoded the window (one pass, same transcript as without heads),
and `mas heads predict` gives per-window and per-0.1 s-frame outputs."""

from __future__ import annotations

import base64
import json

import mlx.core as mx
import numpy as np
import pytest
import soundfile as sf
from mlx.utils import tree_flatten

from mlx_audio_stack.audio import load_audio
from mlx_audio_stack.cli import main
from mlx_audio_stack.errors import WeightsError
from mlx_audio_stack.heads import save_heads
from mlx_audio_stack.heads.features import encode_layers
from mlx_audio_stack.heads.infer import head_outputs
from mlx_audio_stack.heads.model import HeadsArgs, TaskSpec, WhisperHeads
from mlx_audio_stack.models.whisper import ModelDimensions, Whisper, load_model
from mlx_audio_stack.models.whisper.transcribe import transcribe
from mlx_audio_stack.weights_io import save_model_dir

SR = 16000
# English-only vocabulary size (specials after 50257 byte-pair ranks), tiny everywhere else
DIMS = ModelDimensions(80, 1500, 32, 2, 3, 51864, 64, 32, 2, 1)
TASKS = ["speaker_count", "gender", "emotion"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("infer")
    tok = tmp / "synthetic.tiktoken"  # 256 bytes + made-up multi-byte tokens: 50257 ranks
    toks = [bytes([i]) for i in range(256)] + [
        b"\x00" + j.to_bytes(3, "big") for j in range(50257 - 256)
    ]
    tok.write_text("".join(f"{base64.b64encode(t).decode()} {i}\n" for i, t in enumerate(toks)))
    mx.random.seed(0)
    w = Whisper(DIMS)
    wdir = save_model_dir(tmp / "whisper-rand", dict(tree_flatten(w.parameters())),
                          {"model_type": "whisper", "args": DIMS.to_dict(),
                           "tokenizer": "synthetic.tiktoken"},
                          extra_files={"synthetic.tiktoken": tok})  # fmt: skip
    mx.random.seed(1)
    heads = WhisperHeads(HeadsArgs(3, 32, 8, 5, [TaskSpec.from_taxonomy(t) for t in TASKS]))
    hdir = save_heads(heads, tmp / "heads", {"encoder": {"model": "whisper-rand"}})
    rng = np.random.default_rng(0)
    t = np.arange(int(4.3 * SR)) / SR
    x = (0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
    wav = tmp / "talk.wav"
    sf.write(str(wav), x, SR)
    long = tmp / "long.wav"
    sf.write(str(long), np.tile(x, 9)[: int(35.2 * SR)], SR)  # two 30 s windows
    return tmp, wdir, hdir, wav, long


OPTS = dict(temperature=0.0, no_speech_threshold=None, logprob_threshold=None,
            compression_ratio_threshold=None)  # fmt: skip


def test_transcribe_heads_same_pass_same_transcript(setup, monkeypatch):
    _, wdir, hdir, wav, _ = setup
    model = load_model(wdir, "float32")
    calls = {"n": 0}
    real = model.embed_audio

    def counting(mel, return_layers=False):
        calls["n"] += 1
        return real(mel, return_layers)

    monkeypatch.setattr(model, "embed_audio", counting)
    plain = transcribe(str(wav), model, **OPTS)
    n_plain = calls["n"]
    calls["n"] = 0
    res = transcribe(str(wav), model, heads=hdir, **OPTS)
    assert calls["n"] == n_plain >= 1  # no second encoder pass for the heads
    assert res["text"] == plain["text"] and len(res["segments"]) == len(plain["segments"]) >= 1
    for a, b in zip(res["segments"], plain["segments"]):
        assert {k: v for k, v in a.items() if k != "heads"} == b
    # the first segment's outputs equal the heads on independently computed features
    from mlx_audio_stack.heads import load_heads

    h = load_heads(hdir)
    audio = load_audio(str(wav))
    feats = encode_layers(model, audio, 5)  # (L, T, C) of the whole clip
    s = res["segments"][0]
    n = feats.shape[1]  # a random decoder's timestamps may pass the end: clipped there
    a = min(n - 1, int(np.floor(s["start"] / 0.1 + 1e-6)))
    b = min(n, max(a + 1, int(np.ceil(s["end"] / 0.1 - 1e-6))))
    want = head_outputs(h, mx.array(feats[:, a:b]))
    for task in TASKS:
        got = s["heads"][task]
        assert sum(got["probs"].values()) == pytest.approx(1.0, abs=1e-3)
        for c, p in want[task]["probs"].items():
            assert got["probs"][c] == pytest.approx(p, abs=2e-4), (task, c)
    assert len(s["heads"]["speaker_count"]["frame_labels"]) == b - a
    # heads of another encoder size are refused with both sizes named
    other = WhisperHeads(HeadsArgs(4, 32, 8, 5, [TaskSpec.from_taxonomy("gender")]))
    with pytest.raises(WeightsError, match="4 layers x 32.*3 x 32"):
        transcribe(str(wav), model, heads=other, **OPTS)


def test_cli_transcribe_json_has_heads(setup, tmp_path, capsys):
    _, wdir, hdir, wav, _ = setup
    out = tmp_path / "t.json"
    argv = ["transcribe", str(wav), "--model", str(wdir), "--format", "json", "--temperature",
            "0", "-o", str(out), "-q"]  # fmt: skip
    assert main([*argv, "--heads", str(hdir)]) == 0
    segs = json.loads(out.read_text())["segments"]
    assert segs and all(set(s["heads"]) == set(TASKS) for s in segs)
    assert main(argv) == 0
    assert all("heads" not in s for s in json.loads(out.read_text())["segments"])


def test_heads_predict_windows_and_frames(setup, tmp_path):
    _, wdir, hdir, _, long = setup
    out = tmp_path / "p.json"
    assert main(["heads", "predict", str(long), "--heads", str(hdir), "--model", str(wdir),
                 "-o", str(out)]) == 0  # fmt: skip
    res = json.loads(out.read_text())
    assert [(w["start"], w["end"]) for w in res["windows"]] == [(0.0, 30.0), (30.0, 35.2)]
    fr = res["frames"]["speaker_count"]
    assert len(fr["labels"]) == 352 and len(fr["probs"][0]) == 4 and res["frame_seconds"] == 0.1
    # each window's outputs equal the heads on the cached-style features of that window
    from mlx_audio_stack.heads import load_heads

    h = load_heads(hdir)
    feats = encode_layers(load_model(wdir, "float32"), load_audio(str(long)), 5)  # (L, 352, C)
    for w, (a, b) in zip(res["windows"], [(0, 300), (300, 352)]):
        want = head_outputs(h, mx.array(feats[:, a:b]))
        for task in TASKS:
            for c, p in want[task]["probs"].items():
                assert w[task]["probs"][c] == pytest.approx(p, abs=2e-4)
    assert fr["labels"][:300] == want_frames(h, feats[:, :300])
    # without --model the heads' own encoder name is looked up under MAS_WEIGHTS_DIR
    assert main(["heads", "predict", str(long), "--heads", str(hdir), "-o", str(out)]) == 1


def want_frames(h, feats):
    return head_outputs(h, mx.array(feats))["speaker_count"]["frame_labels"]
