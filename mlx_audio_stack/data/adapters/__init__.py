"""Adapters: a dataset folder (or table) -> manifest records (dicts, absolute audio paths).

`ADAPTERS` maps the CLI name to the builder; each builder takes the source path first and
keyword options, and returns records sorted by id (stable output for a stable input).
"""

from __future__ import annotations

from collections.abc import Callable

from .corpora import build_fsdd, build_librispeech
from .emotion import build_cremad, build_ravdess
from .rttm import build_rttm
from .table import build_table

ADAPTERS: dict[str, Callable[..., list[dict]]] = {
    "librispeech": build_librispeech,
    "fsdd": build_fsdd,
    "rttm": build_rttm,
    "ravdess": build_ravdess,
    "cremad": build_cremad,
    "csv": build_table,
}

__all__ = [
    "ADAPTERS",
    "build_cremad",
    "build_fsdd",
    "build_librispeech",
    "build_ravdess",
    "build_rttm",
    "build_table",
]
