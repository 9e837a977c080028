"""OpenBLAS's core type chosen from the CPU's flags (the user's setting wins), the cached BLAS
speed check and `mas doctor` (issue 17, item 10)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from mlx_audio_stack import _blas

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux-only BLAS preload")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PROBE = (
    "import json, mlx_audio_stack; from mlx_audio_stack import _blas; "
    "print(json.dumps({'core': _blas.corename(), 'env': __import__('os').environ.get("
    "'OPENBLAS_CORETYPE'), 'set': _blas.SET_ENV.get('OPENBLAS_CORETYPE')}))"
)


def _run(code: str, tmp_path, **env):
    full = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    full.update(XDG_CACHE_HOME=str(tmp_path / "cache"), PYTHONPATH=REPO, **env)
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=full, timeout=300
    )


def _openblas_or_skip():
    if _blas.loaded is None or _blas.corename() is None:
        pytest.skip("no OpenBLAS loaded (tools/install_blas.sh installs Debian's)")


@pytest.mark.parametrize(
    ("flags", "core"),
    [
        ("avx avx2 fma avx512f avx512bw avx512vl avx512dq", "SkylakeX"),  # Xeon (Skylake-SP)
        ("avx avx2 fma avx512f avx512bw avx512vl avx512_bf16", "Cooperlake"),  # EPYC Zen 4
        ("avx avx2 fma avx512f", "Haswell"),  # AVX-512 F without BW/VL (Knights Landing)
        ("sse4_2 avx avx2 fma", "Haswell"),  # Haswell .. Alder Lake, Zen 1-3
        ("sse4_2 avx", "Sandybridge"),
        ("sse3 sse4_2", "Nehalem"),
        ("sse2 sse3", None),  # nothing to correct: OpenBLAS's own choice stands
    ],
)
def test_coretype_from_flags(flags, core):
    assert _blas.coretype_for(set(flags.split())) == core


@linux
def test_unset_coretype_is_set_from_the_flags_before_the_blas_loads(tmp_path):
    _openblas_or_skip()
    want = _blas.coretype_for(_blas.cpu_flags())
    if want is None:
        pytest.skip("this CPU has no flags that name an OpenBLAS core")
    done = _run(PROBE, tmp_path)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    assert got == {"core": want, "env": want, "set": want}


@linux
@pytest.mark.parametrize("user", ["Prescott", "Haswell"])
def test_the_users_coretype_wins(tmp_path, user):
    _openblas_or_skip()
    done = _run(PROBE, tmp_path, OPENBLAS_CORETYPE=user)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    assert got == {"core": user, "env": user, "set": None}


@linux
def test_generic_kernels_on_an_avx2_cpu_warn_once_and_are_not_cached(tmp_path):
    _openblas_or_skip()
    if not {"avx2", "fma"} <= _blas.cpu_flags():
        pytest.skip("the generic-kernel warning is for CPUs with AVX2 + FMA")
    code = "import mlx_audio_stack; from mlx_audio_stack import _blas; _blas.check_blas()"
    for _ in range(2):  # a failing check is measured again in the next process
        done = _run(code, tmp_path, OPENBLAS_CORETYPE="Prescott")
        assert done.returncode == 0, done.stderr
        lines = [ln for ln in done.stderr.splitlines() if "slow BLAS" in ln]
        assert len(lines) == 1, done.stderr  # once per process, not per check
        assert "Prescott" in lines[0] and "mas doctor" in lines[0]
    assert not (tmp_path / "cache" / "mlx-audio-stack" / "blas-check.json").exists()


@linux
def test_a_passing_check_is_cached_per_machine(tmp_path):
    _openblas_or_skip()
    code = (
        "import json, mlx_audio_stack; from mlx_audio_stack import _blas; "
        "print(json.dumps(_blas.check_blas()))"
    )
    first = _run(code, tmp_path)
    assert first.returncode == 0, first.stderr
    r1 = json.loads(first.stdout.splitlines()[-1])
    if r1["problem"]:
        pytest.skip(f"this machine's BLAS fails the check now: {r1['problem']}")
    assert r1["gflops"] > _blas.SANE_GFLOPS and r1["core"] == _blas.corename()
    cache = json.loads((tmp_path / "cache" / "mlx-audio-stack" / "blas-check.json").read_text())
    assert len(cache) == 1 and list(cache.values())[0]["gflops"] == r1["gflops"]
    second = _run(code, tmp_path)  # a new process: nothing measured, the cached pass returned
    r2 = json.loads(second.stdout.splitlines()[-1])
    assert r2 == dict(r1, cached=True)


@linux
def test_mas_doctor_prints_blas_core_speed_and_kernels(tmp_path):
    _openblas_or_skip()
    done = _run(
        "import sys; from mlx_audio_stack.cli import main; sys.exit(main(['doctor', '--json']))",
        tmp_path,
    )
    report = json.loads(done.stdout)
    assert report["blas"] == _blas.loaded
    want = _blas.coretype_for(_blas.cpu_flags())
    assert report["core"] == (want or report["core"])  # no user setting: chosen from the flags
    assert report["gflops_mlx"] > 0 and report["gflops_n"] == 1024
    assert report["gemv"].startswith(("on", "off"))
    assert done.returncode == (1 if report["problem"] else 0)
    slow = _run(
        "import sys; from mlx_audio_stack.cli import main; sys.exit(main(['doctor']))",
        tmp_path,
        OPENBLAS_CORETYPE="Prescott",
    )
    if {"avx2", "fma"} <= _blas.cpu_flags():
        assert slow.returncode == 1 and "SLOW" in slow.stdout and "Prescott" in slow.stdout
