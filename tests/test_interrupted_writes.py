"""Interrupted writes (issue 16, item 7): SIGKILL, SIGTERM and SIGHUP at random points of
`mas convert`, `mas transcribe -o` and a streaming `mas separate`. After each kill the output
is the old one or the complete new one (never partial); SIGTERM/SIGHUP remove their temp files
at once (exit 143/129, like Ctrl-C); what SIGKILL leaves is removed by the next run into the
same place (`mlx_audio_stack/atomic.py`). These take 1-3 minutes on 2 busy cores.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT), MLX_DEVICE="cpu")


def _tiny_whisper(tmp_path: Path) -> Path:
    """A random tiny openai-whisper `.pt` (needs torch + openai-whisper to write it)."""
    pytest.importorskip("torch", reason="torch writes the source checkpoint")
    pytest.importorskip("whisper", reason="openai-whisper builds the source model")
    import torch
    import whisper

    # width 512: ~200 MB to write, so a kill lands inside the write on an idle machine too
    dims = whisper.model.ModelDimensions(80, 1500, 512, 8, 4, 51864, 448, 512, 8, 4)
    torch.manual_seed(0)
    model = whisper.model.Whisper(dims)
    src = tmp_path / "tiny.pt"
    torch.save({"dims": vars(dims), "model_state_dict": model.state_dict()}, src)
    return src


def _temps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name or ".old-" in p.name)


def test_kill_during_convert_leaves_old_or_new_and_no_temps(tmp_path):
    src = _tiny_whisper(tmp_path)
    out = tmp_path / "w"
    base = [sys.executable, "-m", "mlx_audio_stack", "convert", str(src), "--out", str(out),
            "--model", "whisper", "--force"]  # fmt: skip
    env = _env()
    ok = subprocess.run(
        [*base, "--dtype", "float16"], env=env, capture_output=True, text=True, timeout=120
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    old = json.loads((out / "config.json").read_text())
    assert old["dtype"] == "float16"
    rng = random.Random(0)
    outcomes = []
    for i, sig in enumerate([signal.SIGKILL, signal.SIGTERM, signal.SIGHUP] * 2):
        p = subprocess.Popen([*base, "--dtype", "float32"], env=env, stderr=subprocess.PIPE)
        # the kill lands at a random point of the write: once the temp folder exists, wait
        # 0-0.02 s more for the first three (inside the write), 0-1 s for the others (the write
        # takes ~0.3-2 s here, so some of those land after the rename)
        t0 = time.monotonic()
        while not _temps(tmp_path) and p.poll() is None and time.monotonic() - t0 < 60:
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.02 if i < 3 else 1.0))
        during = bool(_temps(tmp_path))
        p.send_signal(sig)
        rc = p.wait(timeout=60)
        err = p.stderr.read().decode()
        cfg = json.loads((out / "config.json").read_text())  # old or complete new, never none
        assert cfg["dtype"] in ("float16", "float32"), cfg
        if sig != signal.SIGKILL:  # cleaned up at once, like Ctrl-C
            assert _temps(tmp_path) == [], (i, rc, err)
            # -sig: it landed in the interpreter's shutdown, after the work was done (Python
            # puts the default handlers back there); the output above is then the new one
            assert rc in (0, 128 + sig, -sig), err
            assert rc == -sig or rc == 0 or err.strip().endswith(f"interrupted ({sig.name})"), err
            if rc == -sig:
                assert cfg["dtype"] == "float32", (i, cfg)
        outcomes.append((sig.name, rc, cfg["dtype"], "during write" if during else "after"))
        # the next run removes what a SIGKILL left, and completes
        done = subprocess.run(
            [*base, "--dtype", "float16"], env=env, capture_output=True, text=True, timeout=120
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert _temps(tmp_path) == [], outcomes
        assert json.loads((out / "config.json").read_text())["dtype"] == "float16"
    print(outcomes)
    assert {o[0] for o in outcomes if o[3] == "during write"} >= {"SIGKILL", "SIGTERM"}


def test_stale_temps_of_dead_runs_are_removed_and_live_ones_kept(tmp_path):
    from mlx_audio_stack.atomic import remove_stale, temp_path

    out = tmp_path / "w"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale_dir = tmp_path / f".w.tmp-{dead.pid}-abc"
    stale_dir.mkdir()
    (stale_dir / "model.safetensors").write_bytes(b"x" * 100)
    live = tmp_path / f".w.tmp-{os.getppid()}-xyz"  # our parent: alive
    live.mkdir()
    other = tmp_path / f".v.tmp-{dead.pid}-abc"  # another output's temp: not ours to remove
    other.mkdir()
    assert remove_stale(out) == [stale_dir]
    assert live.exists() and other.exists() and not stale_dir.exists()
    # killed between the two renames of a replacement: the old folder comes back
    (tmp_path / f".w.old-{dead.pid}").mkdir()
    (tmp_path / f".w.old-{dead.pid}" / "config.json").write_text("{}")
    tmp = temp_path(out, directory=True)
    assert (out / "config.json").exists() and tmp.name.startswith(f".w.tmp-{os.getpid()}-")


def test_kill_during_transcribe_output_leaves_old_or_complete_file(tmp_path, offline_weights):
    from mlx_audio_stack.paths import data_dir

    weights = offline_weights("whisper-tiny.en")
    data = data_dir()
    if data is None:
        pytest.skip("shared real-speech data not found: set MAS_DATA_DIR")
    clip = data / "librispeech/test-clean/1089/134686/1089-134686-0000.flac"
    out = tmp_path / "t.txt"
    base = [sys.executable, "-m", "mlx_audio_stack", "transcribe", str(clip), "--model",
            str(weights), "-o", str(out)]  # fmt: skip
    first = subprocess.run(base, env=_env(), capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    full = out.read_text()
    assert len(full) > 20
    out.write_text("old\n")
    rng = random.Random(1)
    for sig in (signal.SIGKILL, signal.SIGTERM) * 2:
        p = subprocess.Popen(base, env=_env(), stderr=subprocess.PIPE)
        time.sleep(rng.uniform(1.0, 6.0))
        p.send_signal(sig)
        rc = p.wait(timeout=60)
        assert out.read_text() in ("old\n", full), rc  # never a partial file
        if sig == signal.SIGTERM:
            assert _temps(tmp_path) == [], rc
        out.write_text("old\n")
    done = subprocess.run(base, env=_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and out.read_text() == full
    assert _temps(tmp_path) == []


def _next_run_finds(out: Path) -> None:
    """What any next write into `out` does first (`atomic.temp_path`/`stream_temp_name` call
    it): finish a group commit a kill cut short, remove dead runs' temps."""
    from mlx_audio_stack.atomic import remove_stale

    for p in [*out.glob("spk*.wav"), out / "spk1.wav"]:
        remove_stale(p)


def test_kill_during_streaming_separate_leaves_old_or_new_set_and_no_temps(tmp_path):
    """Two inputs (A, B) give different source sets; runs alternate between them and are killed
    at random points. What the next run finds (after its roll-forward) is always one run's
    complete set: every spk*.wav whole and all from the same input, never spk1 of one run
    beside spk2 of another."""
    import numpy as np
    import soundfile as sf
    from test_mossformer2 import _random_model, _save

    folder = _save(_random_model(2), tmp_path / "m")
    rng_x = np.random.default_rng(0)
    mixes = {}
    for name in "AB":
        x = (rng_x.standard_normal(16000 * 20) * 0.1).astype(np.float32)
        sf.write(str(tmp_path / f"{name}.wav"), x, 16000)
        mixes[name] = x
    out = tmp_path / "sep"

    def base(name: str) -> list[str]:
        return [sys.executable, "-m", "mlx_audio_stack", "separate", str(tmp_path / f"{name}.wav"),
                "--model", str(folder), "--out", str(out), "--chunk", "0.5",
                "--overlap", "0.1"]  # fmt: skip

    def temps(pid: int | None = None) -> list[str]:
        tag = ".tmp-" if pid is None else f".tmp-{pid}-"
        return sorted(q.name for q in out.glob(".*") if tag in q.name)

    def read_set() -> dict[str, np.ndarray]:
        return {p.name: sf.read(str(p), dtype="float32")[0] for p in sorted(out.glob("spk*.wav"))}

    refs = {}
    for name in "AB":  # each input's complete set; the folder ends holding B's
        done = subprocess.run(base(name), env=_env(), capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        refs[name] = read_set()
        assert sorted(refs[name]) == ["spk1.wav", "spk2.wav"]
    assert not np.array_equal(refs["A"]["spk1.wav"], refs["B"]["spk1.wav"])

    def one_set() -> str:  # every file whole (20 s) and all from the same run
        got = read_set()
        assert sorted(got) == ["spk1.wav", "spk2.wav"], sorted(got)
        for name, ref in refs.items():
            if all(np.array_equal(got[k], ref[k]) for k in ref):
                return name
        raise AssertionError("the spk files come from different runs (or none)")

    rng = random.Random(2)
    killed_mid_write, found = 0, []
    for i, sig in enumerate((signal.SIGKILL, signal.SIGTERM) * 2):
        p = subprocess.Popen(
            base("AB"[i % 2]), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        t0 = time.monotonic()  # kill at a random point while the streamed temps are written
        while (
            not (out.is_dir() and temps(p.pid)) and p.poll() is None and time.monotonic() - t0 < 60
        ):
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.5))
        p.send_signal(sig)
        rc = p.wait(timeout=60)
        if sig == signal.SIGTERM:  # its own temps, and the stale ones it found, are gone
            assert temps() == [], rc
        else:
            killed_mid_write += bool(temps(p.pid))  # what SIGKILL left: the next run removes it
        _next_run_finds(out)
        found.append(one_set())
        assert temps() == [] and not list(out.glob(".mas-commit-*"))
    assert killed_mid_write > 0
    print(found)
    done = subprocess.run(base("A"), env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert one_set() == "A"
    assert sorted(q.name for q in out.iterdir()) == ["spk1.wav", "spk2.wav"]


KILL_IN_COMMIT = r"""
import os, signal, sys
from pathlib import Path
import mlx_audio_stack.atomic as atomic
out, kill_at = Path(sys.argv[1]), int(sys.argv[2])
finals = [out / "spk1.wav", out / "spk2.wav"]
tmps = [atomic.stream_temp_name(f) for f in finals]
for i, t in enumerate(tmps, 1):
    t.write_text(f"new{i}")
calls, real = [0], os.replace
def replace(a, b):  # call 1 puts the journal in place, 2.. are the group's renames
    calls[0] += 1
    if calls[0] == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
    real(a, b)
atomic.os.replace = replace
atomic.commit_group(list(zip(tmps, finals)), remove=[out / "spk3.wav"])
"""


@pytest.mark.parametrize("kill_at, expect", [(1, "old"), (2, "new"), (3, "new"), (9, "new")])
def test_sigkill_inside_group_commit_leaves_old_or_complete_new_set(tmp_path, kill_at, expect):
    """A SIGKILL at each step of the group commit (before the journal: the old set stays;
    between two renames: the next run finishes the new set, spk3 of the old 3-source set
    removed); 9: not killed. No temp or journal survives the next run."""
    out = tmp_path / "sep"
    out.mkdir()
    for i in (1, 2, 3):
        (out / f"spk{i}.wav").write_text(f"old{i}")
    (out / "notes.txt").write_text("mine")
    p = subprocess.run([sys.executable, "-c", KILL_IN_COMMIT, str(out), str(kill_at)], env=_env())
    assert p.returncode == (-signal.SIGKILL if kill_at < 9 else 0)
    if kill_at == 2:  # killed after the journal, before the first rename: mixed until repaired
        assert list(out.glob(".mas-commit-*.json")) and (out / "spk3.wav").exists() is False
    _next_run_finds(out)
    got = {p.name: p.read_text() for p in out.iterdir()}
    if expect == "old":
        assert got == {
            "spk1.wav": "old1",
            "spk2.wav": "old2",
            "spk3.wav": "old3",
            "notes.txt": "mine",
        }
    else:
        assert got == {"spk1.wav": "new1", "spk2.wav": "new2", "notes.txt": "mine"}


def test_planted_journal_touches_nothing_outside_its_group(tmp_path):
    """A commit journal of a dead pid that names paths outside the folder, a rename from a
    file that is not the final's temp, or a removal of a file not shaped like a final, is
    dropped without acting."""
    from mlx_audio_stack.atomic import roll_forward

    out = tmp_path / "sep"
    out.mkdir()
    (tmp_path / "secret").write_text("s")
    (out / "notes.txt").write_text("mine")
    (out / "spk1.wav").write_text("old1")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    for j, journal in enumerate(
        [
            {"renames": [["../secret", "spk1.wav"]], "remove": []},
            {"renames": [["notes.txt", "spk1.wav"]], "remove": []},
            {"renames": [[".spk1.wav.tmp-1-w", "spk1.wav"]], "remove": ["notes.txt"]},
            {"renames": [[".x.tmp-1-w", "../x"]], "remove": []},
            {"renames": "nonsense", "remove": 3},
        ]
    ):
        (out / f".mas-commit-{dead.pid}.json").write_text(json.dumps(journal))
        assert roll_forward(out) == [out / f".mas-commit-{dead.pid}.json"], j
        assert (tmp_path / "secret").read_text() == "s" and (
            out / "notes.txt"
        ).read_text() == "mine"
        assert (out / "spk1.wav").read_text() == "old1"
    assert sorted(q.name for q in out.iterdir()) == ["notes.txt", "spk1.wav"]
