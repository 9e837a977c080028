"""The data-QA suite: checks over a dataset manifest that must pass before training on it.

`run_suite(manifest, task, deep=False)` runs the registered checks (`CHECKS`) and returns a
`QAResult` of `Finding`s (check id, severity, item, expected, got). The gate
(`mlx_audio_stack.data.gate`) stores the verdict keyed by manifest hash + SUITE_VERSION.
Also runnable as `pytest data_quality --manifest X --task T [--deep]`.
"""

from .core import CHECKS, SUITE_VERSION, Check, Context, Finding, QAResult, check, run_suite
from .profiles import PROFILES, TaskProfile, get_profile

__all__ = [
    "CHECKS",
    "PROFILES",
    "SUITE_VERSION",
    "Check",
    "Context",
    "Finding",
    "QAResult",
    "TaskProfile",
    "check",
    "get_profile",
    "run_suite",
]
