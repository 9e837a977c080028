"""Progress bars with a total on the long commands (issue 17, item 3): shown on a terminal,
quiet with --quiet or when stderr is not a terminal; `mas separate` counts every window."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios

import mlx.core as mx
import numpy as np
import pytest
import soundfile as sf
from test_mossformer2 import _random_model, _save

from mlx_audio_stack.commands.separate import count_windows
from mlx_audio_stack.models.mossformer2.stream import StreamingSeparator
from mlx_audio_stack.progress import show_progress

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _in_terminal(args: list[str], **env) -> str:
    """Run `mas ARGS` with stdout and stderr on a pseudo-terminal 120 columns wide."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    full = dict(os.environ, PYTHONPATH=REPO, **env)
    cmd = [sys.executable, "-m", "mlx_audio_stack", *args]
    proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, env=full, cwd=REPO)
    os.close(slave)
    out = b""
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        out += data
    os.close(master)
    assert proc.wait(timeout=600) == 0, out.decode(errors="replace")[-2000:]
    return out.decode(errors="replace")


class _FakeStderr:
    def __init__(self, tty: bool):
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_show_progress(monkeypatch):
    monkeypatch.setattr(sys, "stderr", _FakeStderr(True))
    assert show_progress() and not show_progress(quiet=True)
    monkeypatch.setattr(sys, "stderr", _FakeStderr(False))
    assert not show_progress() and show_progress(force=True)


@pytest.mark.parametrize("seconds", [0.3, 0.4, 0.55, 0.7, 1.0, 1.01, 2.33])
def test_count_windows_equals_the_windows_the_stream_separates(seconds):
    calls = []

    class Oracle:  # counts the windows StreamingSeparator hands to the model
        sample_rate, num_spks = 16000, 2

        def __call__(self, x):
            calls.append(x.shape[1])
            return mx.zeros((1, x.shape[1], 2))

    n = int(seconds * 16000)
    st = StreamingSeparator(Oracle(), 0.4, 0.1)
    for i in range(0, n, st.hop):  # blocks of one hop, as separate_file_streaming reads
        st.push(np.zeros(min(st.hop, n - i), np.float32))
    st.flush()
    assert count_windows(n, 0.4 * 16000, 0.1 * 16000) == len(calls)


@pytest.fixture(scope="module")
def mixture(tmp_path_factory):
    d = tmp_path_factory.mktemp("sep")
    folder = _save(_random_model(2), d / "m")
    x = (np.random.default_rng(0).standard_normal(16000) * 0.1).astype(np.float32)
    sf.write(str(d / "mix.wav"), x, 16000)
    return folder, d


def test_separate_bar_counts_every_window_and_ends_at_its_total(mixture):
    folder, d = mixture
    args = ["separate", str(d / "mix.wav"), "--model", str(folder), "--chunk", "0.4"]
    args += ["--overlap", "0.1"]
    out = _in_terminal(args + ["--out", str(d / "a")])
    # 1 s = 16000 samples, windows of 6400 every 4800: three; the last overlap covers the rest
    total = count_windows(16000, 0.4 * 16000, 0.1 * 16000)
    assert total == 3
    shown = re.findall(r"separating: +(\d+)%\|.*?\| ([\d.]+)/(\d+) windows", out)
    assert shown and all(t == str(total) for _, _, t in shown)
    assert shown[-1][:2] == ("100", f"{total}.0")
    quiet = _in_terminal(args + ["--out", str(d / "b"), "--quiet"])
    assert "separating" not in quiet and "wrote" in quiet
    one_pass = _in_terminal(
        ["separate", str(d / "mix.wav"), "--model", str(folder), "--out", str(d / "c")]
    )
    assert re.search(r"100%\|.*\| 1\.0/1 windows", one_pass)


def test_the_bar_moves_once_per_mossformer_block_and_the_model_is_restored():
    from mlx_audio_stack.commands.separate import window_progress

    model = _random_model(2, num_mossformer_layer=3)
    blocks = model.mask_net.mdl.intra_mdl.mossformerM
    original = list(blocks.fsmn)
    with window_progress(model, 2, True) as bar:
        steps = []
        update = bar.update
        bar.update = lambda n=1: (steps.append(n), update(n))
        for _ in range(2):
            model(mx.zeros((1, 4000)))
        assert len(steps) == 6 and abs(sum(steps) - 2) < 1e-9  # 3 blocks x 2 windows
    assert blocks.fsmn == original  # the model is left as it was
    with window_progress(model, 1, False) as bar:
        assert bar is None and blocks.fsmn == original


def test_separate_is_quiet_when_stderr_is_not_a_terminal(mixture):
    folder, d = mixture
    cmd = [sys.executable, "-m", "mlx_audio_stack", "separate", str(d / "mix.wav")]
    cmd += ["--model", str(folder), "--out", str(d / "p")]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0 and "separating" not in done.stderr and "%|" not in done.stderr


def test_vad_and_transcribe_show_totals_on_a_terminal(tmp_path):
    from mlx_audio_stack.errors import WeightsError
    from mlx_audio_stack.weights_get import get_weights

    try:
        get_weights("silero-vad", tmp_path / "silero-vad", offline=True)
        get_weights("whisper-tiny.en", tmp_path / "whisper-tiny.en", offline=True)
    except WeightsError as exc:
        pytest.skip(f"offline weights unavailable: {exc}")
    clip = os.path.join(REPO, "mlx_audio_stack", "assets", "1089-134686-0000.flac")
    env = {"MAS_WEIGHTS_DIR": str(tmp_path)}
    out = _in_terminal(["vad", clip, clip], **env)
    secs = 2 * sf.info(clip).duration
    assert re.search(rf"vad: 100%\|.*\| {secs:.0f}/{secs:.0f} s audio", out)
    assert "vad:" not in _in_terminal(["vad", clip, "--quiet"], **env)
    out = _in_terminal(["transcribe", clip, "--model", str(tmp_path / "whisper-tiny.en")], **env)
    assert re.search(r"100%\|.*\| (\d+)/\1 \[", out)  # frames done / total, with the time
    quiet = _in_terminal(["transcribe", clip, "-q", "--model", str(tmp_path / "whisper-tiny.en")])
    assert "%|" not in quiet
