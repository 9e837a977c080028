"""Small helpers the benchmarks share: what machine and how busy it was."""

from __future__ import annotations

from pathlib import Path

from mlx_audio_stack._blas import cpu_model as cpu_name  # noqa: F401  (re-exported)


def loadavg() -> str:
    """The 1, 5 and 15 minute load averages, or '?'."""
    p = Path("/proc/loadavg")
    return " ".join(p.read_text().split()[:3]) if p.exists() else "?"
