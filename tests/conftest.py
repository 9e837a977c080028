"""Shared fixtures. Tests that need the shared real-speech data or a PyTorch reference skip with
a reason when it is absent (never pass silently)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

import mlx_audio_stack  # noqa: F401  (loads the fast BLAS before any test imports mlx)
from mlx_audio_stack.paths import data_dir


@pytest.fixture(scope="session")
def shared_data() -> Path:
    d = data_dir()
    if d is None:
        pytest.skip("shared real-speech data not found: set MAS_DATA_DIR to ../shared/data")
    return d


def require(module: str, hint: str):
    """Skip (with the install hint) when a reference library is not importable."""
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} not installed: {hint}")
