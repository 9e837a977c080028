"""What `mas pipeline` and `Pipeline.push()` do with input they cannot use: each a clear
one-line error before any output exists, and the microphone's bounded queue (with a test
double of sounddevice that delivers known audio)."""

from __future__ import annotations

import io
import itertools
import json
import sys
import types

import numpy as np
import pytest

from mlx_audio_stack.cli import main
from mlx_audio_stack.errors import AudioError


@pytest.fixture(scope="module")
def weights(offline_weights):
    return {name: offline_weights(name) for name in ("whisper-tiny.en", "silero-vad")}


def _one_error(capsys) -> str:
    err = [x for x in capsys.readouterr().err.strip().splitlines() if "error" in x]
    assert len(err) == 1, err
    return err[0]


@pytest.mark.parametrize(
    "args, says",
    [
        (["--demo", "--chunk", "0"], "--chunk must be more than 0"),
        (["--demo", "--min-chunk", "-1"], "--min-chunk must be more than 0"),
        (["song.wav", "--rate", "8000"], "--rate is the sample rate of raw PCM on stdin"),
        (["--demo", "--vad", "none"], "the pipeline needs voice activity detection"),
    ],
)
def test_options_it_cannot_use_are_one_line_errors(args, says, capsys, tmp_path):
    out = tmp_path / "out"
    assert main(["pipeline", *args, "--out", str(out)]) == 1
    assert says in _one_error(capsys)
    assert not out.exists()


def test_no_sounddevice_fails_before_any_model_loads(monkeypatch, capsys):
    """--mic without sounddevice: the error names what is missing, not a model (the model
    path given does not exist: it was never looked at)."""
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # import raises ImportError
    assert main(["pipeline", "--mic", "--model", "/no/such/weights"]) == 1
    err = _one_error(capsys)
    assert "sounddevice" in err and "/no/such/weights" not in err


def _stdin(monkeypatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", types.SimpleNamespace(buffer=io.BytesIO(data)))


@pytest.mark.parametrize(
    "data, says",
    [
        (b"", "stdin: no audio"),
        (b"RIFF\x24\x08\x00\x00WAVEfmt " + bytes(2000), "starts like a WAV file"),
    ],
)
def test_stdin_without_audio_is_an_error_with_no_outputs(
    data, says, weights, monkeypatch, capsys, tmp_path
):
    _stdin(monkeypatch, data)
    out = tmp_path / "out"
    args = ["pipeline", "-", "--out", str(out), "--quiet", "--embedder", "none"]
    args += ["--model", str(weights["whisper-tiny.en"]), "--vad", str(weights["silero-vad"])]
    assert main(args) == 1
    assert says in _one_error(capsys)
    assert not out.exists()


def test_push_takes_mono_float_samples_only(weights):
    """Interleaved stereo was read as twice the audio, int16 as samples 32768x too loud (a
    6 s chunk ran for minutes)."""
    from mlx_audio_stack.pipeline import Pipeline

    p = Pipeline(
        whisper=weights["whisper-tiny.en"], vad=weights["silero-vad"], embedder=False,
        separator=False,
    )  # fmt: skip
    with pytest.raises(AudioError, match="2 channels"):
        p.push(np.zeros((8000, 2), np.float32))
    with pytest.raises(AudioError, match="int16 samples"):
        p.push(np.zeros(8000, np.int16))
    assert p.push(np.zeros((8000, 1), np.float32)) == []  # one channel as a column is fine
    assert p.result().stats["audio_s"] == pytest.approx(0.5)


class FakeSoundDevice(types.ModuleType):
    """Test double of sounddevice: an InputStream whose start delivers `blocks` blocks of
    known audio at once (block i holds the value i), as a microphone does while the pipeline
    is busy decoding."""

    def __init__(self, blocks: int):
        super().__init__("sounddevice")
        fake = self

        class InputStream:
            def __init__(self, samplerate, channels, dtype, blocksize, device, callback):
                assert samplerate == 16000 and channels == 1 and dtype == "float32"
                self.n, self.callback = blocksize, callback
                fake.stream = self
                self.closed = False

            def __enter__(self):
                for i in range(blocks):
                    self.callback(np.full((self.n, 1), i, np.float32), self.n, None, None)
                return self

            def __exit__(self, *exc):
                self.closed = True

        self.InputStream = InputStream


def test_the_microphone_drops_what_waits_when_the_pipeline_falls_behind(monkeypatch):
    """20 blocks of 0.5 s arrive while nothing is processed and the queue holds 4 s (8
    blocks): when the 9th comes the 8 waiting go at once, again at the 17th, so 16 go in two
    gaps, 8 s of silence stands in their place (event times stay on the microphone's clock),
    and the newest 4 blocks follow in order."""
    from mlx_audio_stack.pipeline.live import mic_chunks

    sd = FakeSoundDevice(blocks=20)
    monkeypatch.setitem(sys.modules, "sounddevice", sd)
    dropped = []
    gen = mic_chunks(0.5, on_drop=dropped.append, behind_s=4.0)
    got = list(itertools.islice(gen, 5))
    gen.close()
    assert sd.stream.closed
    assert dropped == [8.0]
    assert got[0].size == 16 * 8000 and not got[0].any()
    assert [float(c[0]) for c in got[1:]] == list(range(16, 20))
    assert all(c.size == 8000 for c in got[1:])


def test_the_microphone_keeps_every_block_while_the_pipeline_keeps_up(monkeypatch):
    from mlx_audio_stack.pipeline.live import mic_chunks

    monkeypatch.setitem(sys.modules, "sounddevice", FakeSoundDevice(blocks=6))
    dropped = []
    gen = mic_chunks(0.5, on_drop=dropped.append, behind_s=30.0)
    got = list(itertools.islice(gen, 6))
    gen.close()
    assert dropped == [] and [float(c[0]) for c in got] == list(range(6))


def test_other_weights_given_as_whisper_say_what_they_are(weights, capsys):
    """--model pointed at the VAD's folder said "unknown args ['hidden_size', ...]"."""
    assert main(["pipeline", "--demo", "--model", str(weights["silero-vad"])]) == 1
    err = _one_error(capsys)
    assert "holds 'silero_vad' weights, not Whisper" in err and "silero-vad" in err


def test_ctrl_c_on_a_file_run_writes_the_outputs_of_what_was_heard(
    weights, monkeypatch, capsys, tmp_path
):
    """Ctrl-C during a file run (here after 6 s of audio: push raises KeyboardInterrupt) is a
    clean stop: the part heard is flushed and every output written, the report says where it
    stopped, and the exit status still says it was interrupted."""
    from mlx_audio_stack.paths import DEMO_CLIP
    from mlx_audio_stack.pipeline.driver import Pipeline

    real_push, pushed = Pipeline.push, []

    def push(self, chunk):
        if len(pushed) == 12:
            raise KeyboardInterrupt
        pushed.append(chunk.size)
        return real_push(self, chunk)

    monkeypatch.setattr(Pipeline, "push", push)
    out = tmp_path / "out"
    args = ["pipeline", str(DEMO_CLIP), "--out", str(out), "--quiet", "--embedder", "none"]
    args += ["--model", str(weights["whisper-tiny.en"]), "--vad", str(weights["silero-vad"])]
    assert main(args) == 130
    printed = capsys.readouterr()
    assert "interrupted (SIGINT)" in printed.err and "[S1] " in printed.out
    report = (out / "report.md").read_text()
    assert "interrupted after 6.0 s of" in report
    words = [json.loads(x) for x in (out / "events.jsonl").read_text().splitlines()]
    finals = [e for e in words if e["type"] == "final"]
    assert finals and max(e["end"] for e in finals) <= 6.0 + 0.1
    assert (out / "speakers" / "S1.txt").read_text().strip()
    assert not [p for p in out.iterdir() if ".tmp-" in p.name]


def test_ctrl_c_on_live_stdin_makes_the_words_final_and_writes_every_output(weights, tmp_path):
    """SIGINT to `mas pipeline -` while stdin is still open: exit 0, every output there."""
    import os
    import signal
    import subprocess
    import time

    import soundfile as sf

    from mlx_audio_stack.paths import DEMO_CLIP

    x, sr = sf.read(str(DEMO_CLIP), dtype="int16")
    assert sr == 16000
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "mlx_audio_stack", "pipeline", "-", "--quiet", "--out", str(out)]
    cmd += ["--model", str(weights["whisper-tiny.en"]), "--vad", str(weights["silero-vad"])]
    cmd += ["--embedder", "none", "--no-partials"]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    proc.stdin.write(x[: 8 * sr].tobytes())  # 8 s now; stdin stays open
    proc.stdin.flush()
    first = proc.stdout.readline()  # an event: the pipeline is running on the input
    assert json.loads(first)["type"] in ("speaker", "final")
    time.sleep(0.5)
    os.kill(proc.pid, signal.SIGINT)
    rest, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0
    finals = [json.loads(x) for x in rest.decode().splitlines()]
    assert any(e["type"] == "final" for e in finals)
    for f in ("events.jsonl", "speakers/S1.txt", "stdin.rttm", "stdin.srt", "report.md"):
        assert (out / f).stat().st_size > 0, f
    assert not [p for p in out.iterdir() if ".tmp-" in p.name]


def test_ctrl_c_inside_a_decode_loses_no_word_it_made_final(weights, monkeypatch, capsys, tmp_path):
    """SIGINT arriving while a push is decoding (right after a decode that made words final,
    before push() records them) stops the run after that push: those words are in the
    outputs. Cutting push() in half lost them ("He hoped there would be stew for dinner")."""
    import os
    import signal

    from mlx_audio_stack.paths import DEMO_CLIP
    from mlx_audio_stack.pipeline.driver import Pipeline

    real, sent = Pipeline._decode_streams, []

    def decode(self, final):
        out = real(self, final)
        if not sent and any(e["type"] == "final" for e in out):
            sent.extend(e["text"] for e in out if e["type"] == "final")
            os.kill(os.getpid(), signal.SIGINT)  # handled before decode() returns
        return out

    monkeypatch.setattr(Pipeline, "_decode_streams", decode)
    out = tmp_path / "out"
    args = ["pipeline", str(DEMO_CLIP), "--out", str(out), "--quiet", "--embedder", "none"]
    args += ["--model", str(weights["whisper-tiny.en"]), "--vad", str(weights["silero-vad"])]
    assert main(args) == 130
    assert sent and "interrupted" in capsys.readouterr().err
    events = [json.loads(x) for x in (out / "events.jsonl").read_text().splitlines()]
    finals = [e["text"] for e in events if e["type"] == "final"]
    assert finals[: len(sent)] == sent
    assert (out / "speakers" / "S1.txt").read_text().startswith(sent[0])
    assert "interrupted after" in (out / "report.md").read_text()
