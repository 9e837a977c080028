"""`MAS_GEMV=off` routes every model to its plain MLX path, the code a Mac runs.

`make test` runs the parity and end-to-end tests a second time with it (conftest.py fails any
of them during which a CPU-only path ran). Here the probes that check it are shown to work:
on the CPU-kernel path each model family enters its CPU-only code and the probes count it;
with the switch off none does, in a fresh process and in this one on the plain pass.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from _plain_path import FAMILIES, family_counts, gemv_products, run_tiny_models
from conftest import PLAIN_MLX

from mlx_audio_stack.kernels import build, dispatch, library

ROOT = Path(__file__).resolve().parents[1]


def _kernels_available() -> None:
    if build.c_compiler() is None or not sys.platform.startswith("linux"):
        pytest.skip("no C compiler or not Linux: the CPU kernels cannot build here")


def _probe_run(gemv: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "MAS_GEMV"}
    if gemv is not None:
        env["MAS_GEMV"] = gemv
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    script = str(ROOT / "tests" / "_plain_path.py")
    done = subprocess.run([sys.executable, script], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_switch_off_runs_no_cpu_only_path_in_a_fresh_process():
    got = _probe_run("off")
    assert got == {"counts": {}, "gemv_products": 0}


def test_kernels_on_every_family_enters_its_cpu_path_in_a_fresh_process():
    """The probes can fail: without the switch each model's CPU-only code runs and is seen."""
    _kernels_available()
    got = _probe_run(None)
    per_family = family_counts(got["counts"])
    assert all(per_family[f] > 0 for f in FAMILIES), per_family
    assert got["gemv_products"] > 0
    assert got["counts"]["kernels.conv.applies"] > 0  # ECAPA's kernels ran


def test_this_pass_takes_the_path_it_claims(probes):
    """In this process: on the plain pass nothing CPU-only runs (and the guard is installed);
    on the CPU-kernel pass every family's CPU-only code does."""
    was_installed = hasattr(dispatch.use_kernels, "__wrapped__")
    probes.install()
    try:
        before, products = Counter(probes.counts), gemv_products()
        run_tiny_models()
        fired, products = Counter(probes.counts) - before, gemv_products() - products
    finally:
        if not was_installed:
            probes.uninstall()
    if PLAIN_MLX:
        assert was_installed  # conftest's guard watches every test of this pass
        assert not library.early() and not dispatch.kernels_on()
        assert not fired and products == 0, fired
    else:
        _kernels_available()
        per_family = family_counts(fired)
        assert all(per_family[f] > 0 for f in FAMILIES), per_family
        assert products > 0
