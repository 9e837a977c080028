"""Every script in tools/ answers `--help` with its usage and exit 0, and writes nothing: a
renamed library function once broke two benchmarks at import (`heads.report._cpu`), and one
script took `--help` for its output folder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parents[1] / "tools"
SCRIPTS = sorted(
    p for p in TOOLS.glob("*.py") if not p.name.startswith("_") and p.name != "hostile_formats.py"
)  # hostile_formats.py is a library of make_hostile_corpus.py, not a command


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_a_tool_answers_help(script, tmp_path):
    p = subprocess.run(
        [sys.executable, str(script), "--help"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    assert "usage" in p.stdout.lower(), p.stdout[:500]
    assert not list(tmp_path.iterdir()), "--help wrote files"
