"""Hostile and malformed checkpoints, safetensors, configs, YAML and symlinked folders through
every CLI entry point that takes weights (`convert`, `transcribe/separate/embed/vad --model`,
`pipeline --model`).

The corpus is written by `tools/make_hostile_corpus.py` (deterministic, standard library only)
into the test's tmp dir (5-6 MB with its decompression bombs and deep pickles, too big to
commit). Every case must end with exit 1 and one stderr line `mas <cmd>: error: ...` naming
the file (the case's `expect` text), no traceback, no signal, nothing in its output folder, no
marker file from pickled code. Bounds: each case under CASE_SECONDS, the whole process under
MEMORY_BYTES of address space (RLIMIT_AS), so a bomb or an out-of-bounds read cannot pass.
Cases run in one driver process (~0.05 s each); one real `python -m mlx_audio_stack` run per
category checks the console path itself.

Also here: the kill test (SIGKILL/SIGTERM at random points of `mas convert` and `transcribe -o`:
the next run finds the old or the complete new output and no temp files).
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CASE_SECONDS = 10.0  # the slowest case takes ~0.5 s here (2 busy cores)
MEMORY_BYTES = 4 << 30  # RLIMIT_AS of every subprocess: MLX + numpy need ~1.5 GB of address space
DRIVER_TIMEOUT = 240


def _limits() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BYTES, MEMORY_BYTES))


def _env() -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), MLX_DEVICE="cpu")
    env.pop("MAS_MAX_CHECKPOINT_BYTES", None)
    return env


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, list[dict]]:
    spec = importlib.util.spec_from_file_location("corpus", ROOT / "tools/make_hostile_corpus.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    root = tmp_path_factory.mktemp("hostile")
    return root, mod.build(root)


def test_corpus_is_deterministic(corpus, tmp_path):
    root, cases = corpus
    spec = importlib.util.spec_from_file_location("corpus2", ROOT / "tools/make_hostile_corpus.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    again = mod.build(tmp_path / "c")
    assert [c["id"] for c in again] == [c["id"] for c in cases]
    for name in ("pickle/oob_huge.pt", "pickle/bomb_needed.pt", "safetensors/overlap.safetensors"):
        assert (tmp_path / "c" / name).read_bytes() == (root / name).read_bytes(), name


def _check(case: dict, rc, stderr: str, left: list[str]) -> str | None:
    """None when the case failed cleanly, else what is wrong."""
    err = stderr.strip()
    cmd = case["argv"][0]
    if rc != 1:
        return f"exit {rc!r} (expected 1): {err[-300:]}"
    if "\n" in err or "Traceback" in err:
        return f"not one line: {err[-300:]}"
    if not err.startswith(f"mas {cmd}: error: "):
        return f"not a `mas {cmd}: error:` line: {err[:300]}"
    if case["expect"] not in err:
        return f"does not name {case['expect']!r}: {err[:300]}"
    if left:
        return f"left files in its output folder: {left}"
    return None


def test_every_entry_point_refuses_every_hostile_input(corpus, tmp_path):
    root, cases = corpus
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tests/_hostile_driver.py"), str(root / "cases.json"),
         str(root), str(tmp_path / "out")],
        cwd=tmp_path, env=_env(), preexec_fn=_limits, capture_output=True, text=True,
        timeout=DRIVER_TIMEOUT,
    )  # fmt: skip
    results = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    done = {r["id"] for r in results}
    if proc.returncode != 0:  # a signal (SIGSEGV...) or MemoryError killed the driver
        nxt = next((c["id"] for c in cases if c["id"] not in done), None)
        pytest.fail(f"driver died with {proc.returncode} at case {nxt}: {proc.stderr[-2000:]}")
    assert len(results) == len(cases)
    by_id = {c["id"]: c for c in cases}
    problems = []
    for r in results:
        why = _check(by_id[r["id"]], r["rc"], r["stderr"], r["left"])
        if why is None and r["seconds"] > CASE_SECONDS:
            why = f"took {r['seconds']:.1f} s (bound {CASE_SECONDS} s)"
        if why:
            problems.append(f"{r['id']}: {why}")
    assert not (tmp_path / "mas-hostile-marker").exists(), "pickled code ran"
    assert not problems, "\n".join(problems)
    categories = {c["category"] for c in cases}
    assert categories == {"pickle", "safetensors", "config", "symlink", "yaml", "ct2"}
    assert len(cases) > 300
    assert {c["argv"][0] for c in cases} == {
        "convert",
        "transcribe",
        "separate",
        "embed",
        "vad",
        "pipeline",
    }


# one real console run per category (the driver calls cli.main in-process)
REAL = [
    "pickle/oob_huge-whisper",
    "pickle/bomb_needed-ecapa",
    "safetensors/overlap-load-mossformer2",
    "safetensors/truncated-load-whisper",
    "config/whisper-tokenizer_escape",
    "config/ecapa-channels_floats",
    "config/silero_vad-rate_44k",
    "symlink/ct2-tokenizer",
    "yaml/billion_laughs",
    "ct2/huge_nbytes",
    "config/whisper-heads_5_5-pipeline",
]


@pytest.mark.parametrize("case_id", REAL)
def test_real_cli_run(corpus, tmp_path, case_id):
    root, cases = corpus
    case = next(c for c in cases if c["id"] == case_id)
    out = tmp_path / "o"
    out.mkdir()
    argv = [a.replace("{C}", str(root)).replace("{O}", str(out)) for a in case["argv"]]
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "mlx_audio_stack", *argv], cwd=tmp_path, env=_env(),
        preexec_fn=_limits, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    left = sorted(str(p) for p in out.rglob("*"))
    assert _check(case, proc.returncode, proc.stderr, left) is None, proc.stderr
    assert time.perf_counter() - t0 < 60


# ---------------------------------------------------------------- kill test
def _tiny_whisper(tmp_path: Path) -> Path:
    """A random tiny openai-whisper `.pt` (needs torch + openai-whisper to write it)."""
    pytest.importorskip("torch", reason="torch writes the source checkpoint")
    pytest.importorskip("whisper", reason="openai-whisper builds the source model")
    import torch
    import whisper

    dims = whisper.model.ModelDimensions(80, 1500, 256, 4, 4, 51864, 448, 256, 4, 4)
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
        # 0-0.8 s more (the write takes ~0.5-2 s here, so some kills land after the rename)
        t0 = time.monotonic()
        while not _temps(tmp_path) and p.poll() is None and time.monotonic() - t0 < 60:
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.8))
        during = bool(_temps(tmp_path))
        p.send_signal(sig)
        rc = p.wait(timeout=60)
        err = p.stderr.read().decode()
        cfg = json.loads((out / "config.json").read_text())  # old or complete new, never none
        assert cfg["dtype"] in ("float16", "float32"), cfg
        if sig != signal.SIGKILL:  # cleaned up at once, like Ctrl-C
            assert _temps(tmp_path) == [], (i, rc, err)
            assert rc in (0, 128 + sig), err
            assert rc == 0 or err.strip().endswith(f"interrupted ({sig.name})"), err
        outcomes.append((sig.name, rc, cfg["dtype"], "during write" if during else "after"))
        # the next run removes what a SIGKILL left, and completes
        done = subprocess.run(
            [*base, "--dtype", "float16"], env=env, capture_output=True, text=True, timeout=120
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert _temps(tmp_path) == [], outcomes
        assert json.loads((out / "config.json").read_text())["dtype"] == "float16"
    print(outcomes)
    assert any(o[3] == "during write" for o in outcomes)


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


def test_kill_during_transcribe_output_leaves_old_or_complete_file(tmp_path):
    from mlx_audio_stack.paths import data_dir

    weights = Path(os.environ.get("MAS_WEIGHTS_DIR", ROOT / "weights")) / "whisper-tiny.en"
    if not (weights / "config.json").exists():
        pytest.skip(f"{weights}: not converted (mas weights get whisper-tiny.en)")
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


def test_kill_during_streaming_separate_leaves_complete_files_and_no_temps(tmp_path):
    import numpy as np
    import soundfile as sf
    from test_mossformer2 import _random_model, _save

    folder = _save(_random_model(2), tmp_path / "m")
    x = (np.random.default_rng(0).standard_normal(16000 * 20) * 0.1).astype(np.float32)
    sf.write(str(tmp_path / "mix.wav"), x, 16000)
    out = tmp_path / "sep"
    base = [sys.executable, "-m", "mlx_audio_stack", "separate", str(tmp_path / "mix.wav"),
            "--model", str(folder), "--out", str(out), "--chunk", "0.5",
            "--overlap", "0.1"]  # fmt: skip

    def temps(pid: int | None = None) -> list[str]:
        tag = ".tmp-" if pid is None else f".tmp-{pid}-"
        return sorted(q.name for q in out.glob(".*") if tag in q.name)

    def complete() -> None:  # every spk file present is a whole 20 s WAV
        for p in out.glob("spk*.wav"):
            assert sf.info(str(p)).frames == len(x), p

    rng = random.Random(2)
    killed_mid_write = 0
    for sig in (signal.SIGKILL, signal.SIGTERM) * 2:
        p = subprocess.Popen(base, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        t0 = time.monotonic()  # kill at a random point while the streamed temps are written
        while (
            not (out.is_dir() and temps(p.pid)) and p.poll() is None and time.monotonic() - t0 < 60
        ):
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.5))
        p.send_signal(sig)
        rc = p.wait(timeout=60)
        complete()
        if sig == signal.SIGTERM:  # its own temps, and the stale ones it found, are gone
            assert temps() == [], rc
        else:
            killed_mid_write += bool(temps(p.pid))  # what SIGKILL left: the next run removes it
    assert killed_mid_write > 0
    done = subprocess.run(base, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    complete()
    assert sorted(q.name for q in out.iterdir()) == ["spk1.wav", "spk2.wav"]
