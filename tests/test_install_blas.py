"""tools/install_blas.sh says what actually happened (issue 17, item 5), run against a fake
apt-get so that no package is installed."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "tools" / "install_blas.sh"


def _run(tmp_path, apt_body: str, present: bool = False) -> str:
    lib = tmp_path / "lib" / "libblas.so.3"
    lib.parent.mkdir(exist_ok=True)
    if present:
        lib.write_bytes(b"")
    bin_ = tmp_path / "bin"
    bin_.mkdir(exist_ok=True)
    fakes = {"apt-get": apt_body, "id": "echo 0"}  # root: no sudo asked
    for name, body in fakes.items():
        (bin_ / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_ / name).chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_}:/usr/bin:/bin", BLAS_PATHS=str(lib))
    done = subprocess.run(["sh", str(SCRIPT)], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr  # never stops `make setup`
    return done.stdout


@pytest.fixture(autouse=True)
def _shell():
    if not Path("/bin/sh").exists():
        pytest.skip("no /bin/sh")


def test_already_installed(tmp_path):
    out = _run(tmp_path, "echo apt-get must not run; exit 1", present=True)
    assert out.strip() == f"OpenBLAS: already installed ({tmp_path / 'lib' / 'libblas.so.3'})"


def test_installed(tmp_path):
    lib = tmp_path / "lib" / "libblas.so.3"
    out = _run(tmp_path, f'[ "$1" = install ] && : > {lib}; exit 0')
    assert out.splitlines()[-1] == f"OpenBLAS: installed ({lib})"


def test_installed_on_the_second_try_after_an_update(tmp_path):
    lib = tmp_path / "lib" / "libblas.so.3"
    body = f'[ "$1" = update ] && : > {tmp_path}/updated\n'
    body += f'[ "$1" = install ] && [ -e {tmp_path}/updated ] && : > {lib} && exit 0\n'
    body += 'echo "E: Unable to locate package libopenblas0-pthread" >&2; exit 100'
    out = _run(tmp_path, body)
    assert out.splitlines()[-1] == f"OpenBLAS: installed ({lib})"
    assert "failed" not in out


def test_failure_names_the_reason(tmp_path):
    body = 'echo "E: Could not get lock /var/lib/dpkg/lock-frontend" >&2; exit 100'
    out = _run(tmp_path, body)
    last = out.splitlines()[-1]
    assert last.startswith("OpenBLAS: apt-get install libopenblas0-pthread failed (E: Could not")
    assert last.endswith("MLX will run with its slow BLAS")


def test_a_failing_exit_code_with_the_library_in_place_is_not_reported_as_a_failure(tmp_path):
    lib = tmp_path / "lib" / "libblas.so.3"
    out = _run(tmp_path, f'[ "$1" = install ] && : > {lib}; echo "W: a warning" >&2; exit 1')
    assert out.splitlines()[-1] == f"OpenBLAS: installed ({lib})"
