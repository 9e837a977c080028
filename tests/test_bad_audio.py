"""Every audio-taking CLI entry point (transcribe, vad, embed, separate, qa run) over the bad-audio
corpus (tests/bad_audio_corpus.py; issue 16 items 8 and 9): each case ends within the time
bound, under a memory bound (RLIMIT_AS), with exit 1 and a one-line error naming the file
and the problem, or with exit 0 and a correct result; a failed case leaves no output file.

The cases of one entry point run in one subprocess (`cli.main` called per case, stdout and
stderr captured per case) to pay the import once; the subprocess is what the bounds apply to.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from _helpers import load_tool
from bad_audio_corpus import HUGE_BYTES, HUGE_CHANNELS, HUGE_RATE, build

from mlx_audio_stack.paths import REPO_ROOT

MEMORY_LIMIT = 3 << 30  # address space of each driver process
VAD_MEMORY_LIMIT = 2 << 30  # vad, embed: the 1 GB file read whole needs 2 GB as float32 alone
TIME_LIMIT = 120  # seconds for each driver process (all its cases)
CASE_SECONDS = 30  # seconds for any one case (the FIFO case used to block forever)
WEIGHTS = Path(os.environ.get("MAS_WEIGHTS_DIR") or REPO_ROOT / "weights")

# error cases: file -> words the one-line error must contain (besides the file's path)
ERRORS = {
    "fifo.wav": "is a FIFO",
    "folder.wav": "is a directory",
    "truncated.wav": "truncated",
    "truncated.aiff": "AIFF header declares",
    "truncated.flac": "FLAC header declares",
    "truncated.ogg": "no end-of-stream page",
    "huge_header.wav": "declares 2000000000 bytes",
    "empty.wav": "0 samples",
    "scaled_1e30.wav": "out of range",
    "nan.wav": "NaN",
    "not_audio.wav": "not a readable audio file",
}

DRIVER = r"""
import contextlib, io, json, resource, sys, time, traceback
resource.setrlimit(resource.RLIMIT_AS, (int(sys.argv[2]), int(sys.argv[2])))
from mlx_audio_stack.cli import main
for case in json.loads(sys.argv[1]):
    print(json.dumps({"start": case["name"]}), flush=True)
    out, err, t0, exc = io.StringIO(), io.StringIO(), time.perf_counter(), None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(case["argv"])
        except BaseException:
            rc, exc = None, traceback.format_exc()
    print(json.dumps({"name": case["name"], "rc": rc, "stdout": out.getvalue(),
                      "stderr": err.getvalue(), "exc": exc,
                      "seconds": time.perf_counter() - t0}), flush=True)
"""


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return build(tmp_path_factory.mktemp("corpus"))


def _drive(cases: list[dict], limit: int = MEMORY_LIMIT) -> dict[str, dict]:
    """Run the cases in one bounded subprocess; returns name -> result."""
    env = {**os.environ, "MAS_WEIGHTS_DIR": str(WEIGHTS), "PYTHONPATH": str(REPO_ROOT)}
    try:
        p = subprocess.run(
            [sys.executable, "-c", DRIVER, json.dumps(cases), str(limit)],
            capture_output=True,
            text=True,
            timeout=TIME_LIMIT,
            cwd=REPO_ROOT,
            env=env,
        )
        stdout, stderr, rc = p.stdout, p.stderr, p.returncode
    except subprocess.TimeoutExpired as exc:
        stdout = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        stderr, rc = "timeout", "timeout"
    results, last = {}, None
    for line in stdout.splitlines():
        r = json.loads(line)
        if "start" in r:
            last = r["start"]
        else:
            results[r["name"]] = r
    if os.environ.get("MAS_TEST_VERBOSE"):
        print({n: round(r["seconds"], 2) for n, r in results.items()})
    assert rc == 0 and len(results) == len(cases), (
        f"driver ended with {rc} during case {last!r}: {stderr[-2000:]}"
    )
    return results


def _check_errors(results: dict, corpus: dict, entry: str, out: Path) -> None:
    for name, words in ERRORS.items():
        if name not in results:
            continue
        r = results[name]
        lines = r["stderr"].strip().splitlines()
        assert r["exc"] is None, f"{entry} {name}: exception\n{r['exc']}"
        assert r["rc"] == 1, f"{entry} {name}: exit {r['rc']}, stderr {r['stderr']!r}"
        assert len(lines) == 1, f"{entry} {name}: expected one line, got {r['stderr']!r}"
        assert lines[0].startswith(f"mas {entry}: error: {corpus[name]}") and words in lines[0], (
            f"{entry} {name}: {lines[0]!r}"
        )
        assert r["seconds"] < CASE_SECONDS, f"{entry} {name}: {r['seconds']:.1f} s"
        left = list(out.glob(f"{Path(name).stem}*")) + list(out.glob(f".{Path(name).stem}*"))
        assert not left, f"{entry} {name}: left {left}"


def _error_cases(corpus: dict, argv) -> list[dict]:
    return [{"name": n, "argv": argv(n, corpus[n])} for n in ERRORS]


@pytest.fixture(scope="module")
def weights_root(offline_weights) -> Path:
    """MAS_WEIGHTS_DIR (or weights/) when it holds tiny.en and Silero; else both converted
    offline into the session's folder, which the CLI runs below then use."""
    global WEIGHTS
    names = ("whisper-tiny.en", "silero-vad")
    if not all((WEIGHTS / n / "model.safetensors").is_file() for n in names):
        WEIGHTS = offline_weights(names[0]).parent
        offline_weights(names[1])
    return WEIGHTS


def _need(name: str) -> Path:
    d = WEIGHTS / name
    if not (d / "model.safetensors").is_file():
        pytest.skip(f"{d} missing: run `mas weights get {name}` (MAS_WEIGHTS_DIR={WEIGHTS})")
    return d


def test_transcribe(corpus, tmp_path, weights_root):
    _need("whisper-tiny.en")
    out = tmp_path / "out"

    def argv(name, path):
        return ["transcribe", str(path), "-o", str(out / f"{Path(name).stem}.txt")]

    ok = ["silence_10min.wav", "wrong_ext.mp3"]
    res = _drive(_error_cases(corpus, argv) + [{"name": n, "argv": argv(n, corpus[n])} for n in ok])
    _check_errors(res, corpus, "transcribe", out)
    for n in ok:
        assert res[n]["rc"] == 0 and res[n]["exc"] is None, res[n]
    # 10 minutes of digital silence: no words (openai-whisper's rule alone gave "you" x 34);
    # every window is skipped before decoding, so it also takes no decoding time
    assert (out / "silence_10min.txt").read_text() == ""
    assert "stew" in (out / "wrong_ext.txt").read_text().lower()


def test_vad(corpus, tmp_path, weights_root):
    _need("silero-vad")
    out = tmp_path / "out"

    def argv(name, path):
        return ["vad", str(path), "-o", str(out / f"{Path(name).stem}.json")]

    ok = ["silence_3s.wav", "wrong_ext.mp3", "huge_1gb.wav"]
    cases = _error_cases(corpus, argv) + [{"name": n, "argv": argv(n, corpus[n])} for n in ok]
    res = _drive(cases, VAD_MEMORY_LIMIT)
    _check_errors(res, corpus, "vad", out)
    for n in ok:
        assert res[n]["rc"] == 0 and res[n]["exc"] is None, res[n]
    seg = {n: json.loads((out / f"{Path(n).stem}.json").read_text())[0] for n in ok}
    assert seg["silence_3s.wav"]["segments"] == []
    assert len(seg["wrong_ext.mp3"]["segments"]) >= 1
    # the real 1 GB file: streamed under the 2 GB address-space limit
    big = seg["huge_1gb.wav"]
    assert big["segments"] == [] and big["sample_rate"] == HUGE_RATE
    assert abs(big["duration_s"] - HUGE_BYTES / (2 * HUGE_CHANNELS) / HUGE_RATE) < 0.01


def _tiny_ecapa(path: Path) -> Path:
    import mlx.core as mx
    from mlx.utils import tree_flatten

    from mlx_audio_stack.models.ecapa import ECAPA_TDNN, EcapaArgs
    from mlx_audio_stack.weights_io import save_model_dir

    args = load_tool("make_ecapa_fixtures").TINY_ARGS  # the tiny config the ECAPA tests use
    model = ECAPA_TDNN(EcapaArgs(**args))
    rng = np.random.default_rng(0)
    w = {}
    for k, v in tree_flatten(model.parameters()):
        a = rng.standard_normal(v.shape).astype(np.float32) * 0.2
        if k.endswith("running_var"):
            a = np.abs(a) + 0.5
        w[k] = mx.array(a)
    return save_model_dir(path, w, {"model_type": "ecapa", "args": args})


def _tiny_mossformer(path: Path) -> Path:
    import mlx.core as mx
    from mlx.utils import tree_flatten

    from mlx_audio_stack.models.mossformer2 import ModelArgs, MossFormer2
    from mlx_audio_stack.weights_io import save_model_dir

    mx.random.seed(0)
    m = MossFormer2(
        ModelArgs(
            num_spks=2,
            sampling_rate=16000,
            encoder_embedding_dim=32,
            mossformer_sequence_dim=32,
            num_mossformer_layer=1,
        )
    )
    w = dict(tree_flatten(m.parameters()))
    return save_model_dir(path, w, {"model_type": "mossformer2", "args": m.args.to_dict()})


def test_embed(corpus, tmp_path):
    model = _tiny_ecapa(tmp_path / "ecapa")
    out = tmp_path / "out"

    def argv(name, path):
        return ["embed", str(path), "--model", str(model), "--out", str(out / f"{name}.json")]

    ok = ["silence_3s.wav", "wrong_ext.mp3", "huge_1gb.wav"]
    cases = _error_cases(corpus, argv) + [{"name": n, "argv": argv(n, corpus[n])} for n in ok]
    res = _drive(cases, VAD_MEMORY_LIMIT)  # the 1 GB file is streamed, as in vad
    _check_errors(res, corpus, "embed", out)
    for n in ok:
        assert res[n]["rc"] == 0 and res[n]["exc"] is None, res[n]
        emb = json.loads((out / f"{n}.json").read_text())["embedding"]
        assert len(emb) == 24 and np.isfinite(emb).all()


def test_verify_and_pipeline(corpus, tmp_path, weights_root):
    """The two other entry points that take audio files: `verify` (either side bad) and
    `pipeline FILE` (tracking and separation off: the reading is what is tested)."""
    _need("whisper-tiny.en")
    _need("silero-vad")
    model = _tiny_ecapa(tmp_path / "ecapa")
    out = tmp_path / "out"
    good = str(corpus["speech.wav"])
    cases = []
    for name in ERRORS:
        bad = str(corpus[name])
        cases.append({"name": name, "argv": ["verify", bad, good, "--model", str(model)]})
        cases.append({"name": f"b:{name}", "argv": ["verify", good, bad, "--model", str(model)]})
        pipe = ["pipeline", bad, "--embedder", "none", "--separator", "none", "--quiet"]
        cases.append({"name": f"p:{name}", "argv": [*pipe, "--out", str(out / Path(name).stem)]})
    cases.append({"name": "ok", "argv": ["verify", good, str(corpus["wrong_ext.mp3"]), "--model",
                                         str(model), "--format", "json"]})  # fmt: skip
    res = _drive(cases)
    _check_errors(res, corpus, "verify", out)
    for prefix, entry in (("b:", "verify"), ("p:", "pipeline")):
        got = {n: res[prefix + n] for n in ERRORS}
        _check_errors(got, corpus, entry, out)
    r = res["ok"]
    assert r["rc"] == 0 and r["exc"] is None, r
    assert -1 <= json.loads(r["stdout"])["score"] <= 1


def test_separate(corpus, tmp_path):
    model = _tiny_mossformer(tmp_path / "moss")
    out = tmp_path / "out"

    def argv(name, path):
        return ["separate", str(path), "--model", str(model), "--out", str(out / Path(name).stem)]

    ok = ["silence_3s.wav", "wrong_ext.mp3"]
    res = _drive(_error_cases(corpus, argv) + [{"name": n, "argv": argv(n, corpus[n])} for n in ok])
    _check_errors(res, corpus, "separate", out)
    for n in ok:
        assert res[n]["rc"] == 0 and res[n]["exc"] is None, res[n]
        n_in = sf.info(str(corpus[n])).frames
        for spk in ("spk1.wav", "spk2.wav"):
            y, sr = sf.read(str(out / Path(n).stem / spk))
            assert sr == 16000 and len(y) == n_in and np.isfinite(y).all()


def test_qa_run(corpus, tmp_path):
    """One manifest naming every corpus file (but the 1 GB one), deep mode: each bad file is
    a finding naming it, the run fails with exit 1, and nothing blocks."""
    expect = {
        "fifo.wav": "audio.unreadable",
        "folder.wav": "audio.unreadable",
        "truncated.wav": "audio.truncated",
        "truncated.aiff": "audio.truncated",
        "truncated.flac": "audio.truncated",
        "truncated.ogg": "audio.truncated",
        "huge_header.wav": "audio.truncated",
        "empty.wav": "audio.empty",
        "not_audio.wav": "audio.unreadable",
        "scaled_1e30.wav": "audio_deep.range",
        "nan.wav": "audio_deep.nonfinite",
        "silence_10min.wav": "audio_deep.silence",
    }
    recs = []
    for name in [*expect, "speech.wav", "wrong_ext.mp3"]:
        try:
            duration = sf.info(str(corpus[name])).duration if name != "fifo.wav" else 1.0
        except Exception:  # not readable: the audio check reports it
            duration = 1.0
        recs.append(
            {
                "id": name,
                "audio": str(corpus[name]),
                "duration": duration,
                "sample_rate": 16000,
                "channels": 1,
                "split": "train",
                "dataset": "corpus",
                "license": "CC0-1.0",
            }
        )
    manifest = tmp_path / "corpus.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in recs))
    report = tmp_path / "qa.json"
    argv = ["qa", "run", str(manifest), "--task", "audio", "--deep", "--report-dir", ""]
    res = _drive([{"name": "qa", "argv": [*argv, "--quiet", "--json", str(report)]}])["qa"]
    assert res["exc"] is None and res["rc"] == 1, res
    found = json.loads(report.read_text())["findings"]
    for name, check in expect.items():
        items = {str(corpus[name]), name}
        hits = [f for f in found if f["item"] in items and f["check"] == check]
        assert hits and hits[0]["severity"] == "error", (name, check, found)
    clean = [f for f in found if f["item"] in {"wrong_ext.mp3"} and f["check"].startswith("audio")]
    assert not [f for f in clean if f["severity"] == "error"], clean


def test_unreadable_permissions(corpus, tmp_path):
    if os.geteuid() == 0:
        pytest.skip("running as root: a mode-000 file is readable, the case cannot be made")
    out = tmp_path / "out"
    path = str(corpus["unreadable.wav"])
    cases = [
        {"name": "transcribe", "argv": ["transcribe", path, "-o", str(out / "t.txt")]},
        {"name": "vad", "argv": ["vad", path, "-o", str(out / "v.json")]},
        {"name": "embed", "argv": ["embed", path, "--model", str(tmp_path / "none")]},
        {"name": "separate", "argv": ["separate", path, "--model", "none", "--out", str(out)]},
    ]
    for name, r in _drive(cases).items():
        assert r["exc"] is None and r["rc"] == 1, r
        assert r["stderr"].strip() == f"mas {name}: error: {path}: permission denied (not readable)"
    assert not out.exists()


def test_streamed_reading_equals_whole_file(tmp_path, weights_root):
    """What lets vad, transcribe and separate stream long inputs: block-wise reading with one
    continuous resampler equals reading the whole file, and streamed VAD probabilities equal
    the whole-file ones (context and LSTM state carried across blocks)."""
    import librosa

    from mlx_audio_stack.audio import load_audio, stream_audio
    from mlx_audio_stack.paths import DEMO_CLIP

    x, sr = sf.read(str(DEMO_CLIP), dtype="float32")
    x = x[: 5 * sr]
    wav = tmp_path / "stereo22k.wav"
    y = librosa.resample(x, orig_sr=sr, target_sr=22050)
    sf.write(wav, np.stack([y, 0.5 * y], axis=1), 22050, subtype="FLOAT")
    for rate in (16000, 8000, 22050):
        whole = load_audio(wav, rate)
        blocks = list(stream_audio(wav, block_s=0.77, sr=rate))
        assert len(blocks) >= 7
        np.testing.assert_array_equal(np.concatenate(blocks), whole)
    d = WEIGHTS / "silero-vad"
    if not (d / "model.safetensors").is_file():
        pytest.skip(f"{d} missing: run `mas weights get silero-vad`")
    from mlx_audio_stack.models.silero_vad.load import load_vad
    from mlx_audio_stack.models.silero_vad.offline import file_speech_probs, speech_probs

    model = load_vad(d)
    for rate in (16000, 8000):
        ref = speech_probs(model, load_audio(wav, rate), rate)
        got, n = file_speech_probs(model, wav, rate, block_s=1.3)
        assert n == load_audio(wav, rate).size and got.shape == ref.shape
        np.testing.assert_allclose(got, ref, atol=1e-5)


CONTAINERS = [  # (format, subtype, suffix): every container whose cut libsndfile reads short
    ("WAV", "PCM_16", "wav"),
    ("WAV", "IMA_ADPCM", "wav"),
    ("WAVEX", "PCM_24", "wav"),
    ("RF64", "PCM_16", "rf64"),
    ("W64", "PCM_16", "w64"),
    ("AIFF", "PCM_16", "aiff"),
    ("AIFF", "FLOAT", "aif"),
    ("AIFF", "ULAW", "aifc"),
    ("AU", "PCM_16", "au"),
    ("FLAC", "PCM_16", "flac"),
    ("FLAC", "PCM_24", "flac"),
    ("OGG", "VORBIS", "ogg"),
]


@pytest.mark.parametrize("fmt,subtype,suffix", CONTAINERS)
@pytest.mark.parametrize("channels", [1, 2])
def test_cut_containers_are_refused(tmp_path, fmt, subtype, suffix, channels):
    """A file cut at 2/3 is refused as truncated, naming the file, by every reader (header
    check, whole read, streamed read); the complete file reads back at its full length."""
    from mlx_audio_stack.audio import audio_info, load_audio, stream_audio
    from mlx_audio_stack.errors import AudioError

    x = np.random.default_rng(0).standard_normal((4 * 16000, channels)).astype(np.float32) * 0.1
    full, cut = tmp_path / f"full.{suffix}", tmp_path / f"cut.{suffix}"
    sf.write(full, x, 16000, format=fmt, subtype=subtype)
    data = full.read_bytes()
    cut.write_bytes(data[: len(data) * 2 // 3])
    n = sf.info(str(full)).frames  # ADPCM pads the last block: n >= 64000
    assert n >= x.shape[0] and audio_info(full).frames == n and load_audio(full).size == n
    assert sf.info(str(cut)).frames < n or fmt == "FLAC"  # what libsndfile alone says
    for read in (audio_info, load_audio, lambda p: list(stream_audio(p))):
        with pytest.raises(AudioError, match="truncated") as e:
            read(cut)
        assert str(e.value).startswith(f"{cut}: truncated: ")
