"""The parity tests' committed fixtures really stand in for the references: each fixture test
is run in a subprocess where torch and every reference library cannot be imported
(tests/_blocker), and must pass there (not skip). The weights it needs are converted here,
from the installed reference, into the subprocess's MAS_WEIGHTS_DIR, as a machine without
the references would have them from `mas weights get`.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from _helpers import ROOT, blocked_env

# parity file, fixture test, reference module, weights folder the test reads (or None)
CASES = {
    "silero_vad": (
        "test_vad_parity.py",
        "test_probs_and_segments_match_fixture",
        "silero_vad",
        "silero-vad",
    ),
    "voice_encoder": (
        "test_voice_encoder_parity.py",
        "test_embeddings_match_fixture",
        "resemblyzer",
        "voice-encoder",
    ),
    "mossformer2": (
        "test_mossformer2_parity.py",
        "test_parity_matches_fixture",
        "clearvoice",
        None,
    ),
}


def _weights(folder: str, out: Path) -> Path:
    """`folder` converted from the installed reference into `out` (the same route as
    `mas weights get` offline)."""
    from mlx_audio_stack.convert import convert
    from mlx_audio_stack.weights_get import get_weights

    if folder == "silero-vad":
        return get_weights("silero-vad", out / folder, offline=True)
    src = Path(importlib.util.find_spec("resemblyzer").origin).parent / "pretrained.pt"
    return convert(src, out / folder)


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n == "silero_vad" else n for n in CASES]
)
def test_fixture_test_passes_with_the_reference_blocked(name, tmp_path, shared_data):
    test_file, test_name, module, folder = CASES[name]
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed: {test_file}::{test_name} already runs without it")
    if folder is not None:
        _weights(folder, tmp_path)
    env = {**blocked_env(), "MAS_WEIGHTS_DIR": str(tmp_path), "MAS_DATA_DIR": str(shared_data)}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
         f"tests/{test_file}::{test_name}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    tail = proc.stdout[-2000:] + proc.stderr[-2000:]
    assert proc.returncode == 0, tail
    assert "1 passed" in proc.stdout and "skipped" not in proc.stdout, tail
