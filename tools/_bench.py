"""Small helpers the benchmarks share: what machine and how busy it was, and writing one
tool's marked section of a report."""

from __future__ import annotations

import re
from pathlib import Path

from mlx_audio_stack._blas import cpu_model as cpu_name  # noqa: F401  (re-exported)


def loadavg() -> str:
    """The 1, 5 and 15 minute load averages, or '?'."""
    p = Path("/proc/loadavg")
    return " ".join(p.read_text().split()[:3]) if p.exists() else "?"


def replace_section(report: Path, begin: str, end: str, block: str, head: str = "") -> None:
    """Put `block` (which starts with `begin` and ends with `end`) in place of that section of
    `report`, or append it; a new report starts with `head`. Written atomically."""
    from mlx_audio_stack.atomic import atomic_output

    text = report.read_text(encoding="utf-8") if report.is_file() else head
    pat = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
    text = pat.sub(lambda _: block, text) if pat.search(text) else text.rstrip() + "\n\n" + block
    report.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(report) as tmp:
        tmp.write_text(text.rstrip() + "\n", encoding="utf-8")
