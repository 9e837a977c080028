"""Tier 1 for every model package, torch-free: a tiny random config of each model is written
as a weights folder, loaded by the package's `load_model(path)` and run forward on the CPU in
a fresh interpreter where torch and every reference library cannot be imported
(tests/_smoke_runner.py under tests/_blocker). Checks the output shapes, that they are finite,
and that nothing imported a reference library: the models need none of them to run.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from _helpers import ROOT, blocked_env

# model -> {output: shape} for the runner's tiny configs and inputs
EXPECTED = {
    "whisper": {"audio_features": [1, 8, 32], "logits": [1, 4, 64]},
    "silero_vad": {"probs_16k": [32], "probs_8k": [32]},
    "ecapa": {"embeddings": [2, 12]},
    "mossformer2": {"sources": [1, 4000, 2]},
    "voice_encoder": {"embeddings": [2, 16]},
    "speaker_count": {"probs": [20, 4], "row_sums": [20]},
}


def test_every_model_package_is_covered():
    packages = {
        p.name
        for p in (ROOT / "mlx_audio_stack" / "models").iterdir()
        if (p / "__init__.py").is_file()
    }
    assert packages == set(EXPECTED)


def test_every_model_package_keeps_the_contract():
    """model.py: an args dataclass and a model class with `sanitize(self, weights)`; load.py:
    `load_model(path, ...)`. One signature everywhere (tests/_smoke_runner.py relies on it)."""
    import dataclasses
    import importlib
    import inspect

    import mlx.nn as nn

    for name in EXPECTED:
        model = importlib.import_module(f"mlx_audio_stack.models.{name}.model")
        load = importlib.import_module(f"mlx_audio_stack.models.{name}.load")
        assert list(inspect.signature(load.load_model).parameters)[0] == "path", name
        own = [
            c
            for _, c in inspect.getmembers(model, inspect.isclass)
            if c.__module__ == model.__name__
        ]
        assert any(dataclasses.is_dataclass(c) for c in own), f"{name}: no args dataclass"
        with_sanitize = [c for c in own if issubclass(c, nn.Module) and "sanitize" in vars(c)]
        assert len(with_sanitize) == 1, f"{name}: {with_sanitize}"
        params = list(inspect.signature(with_sanitize[0].sanitize).parameters)
        assert params == ["self", "weights"], f"{name}: sanitize{tuple(params)}"
        assert not hasattr(model, "sanitize"), f"{name}: a module-level sanitize besides"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_tiny_model_runs_without_torch(name, tmp_path):
    out = tmp_path / "report.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "_smoke_runner.py"), name, str(out)],
        env=blocked_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["torch_importable"] is False  # the blocker held
    assert report["reference_modules_loaded"] == []
    outputs = report["outputs"]
    assert {k: v["shape"] for k, v in outputs.items()} == EXPECTED[name]
    bad = [k for k, v in outputs.items() if not v["finite"]]
    assert not bad, f"{name}: non-finite values in {bad}"
