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

The kill tests (interrupted writes) are in tests/test_interrupted_writes.py.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _helpers import load_tool

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
    root = tmp_path_factory.mktemp("hostile")
    return root, load_tool("make_hostile_corpus").build(root)


def test_corpus_is_deterministic(corpus, tmp_path):
    root, cases = corpus
    again = load_tool("make_hostile_corpus").build(tmp_path / "c")
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
