"""Small helpers shared by the checks."""

from __future__ import annotations

import math


def num(rec: dict, key: str) -> float | None:
    """A finite numeric field, else None (schema reports the bad value)."""
    v = rec.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return float(v)


def seg_end(rec: dict) -> float | None:
    """End of a record's segment in its file: `end`, else start + duration."""
    end = num(rec, "end")
    if end is not None:
        return end
    dur = num(rec, "duration")
    return None if dur is None else (num(rec, "start") or 0.0) + dur


def rid(rec: dict, i: int) -> str:
    r = rec.get("id")
    return str(r) if r is not None else f"record #{i + 1}"


def norm_text(t: str) -> str:
    return " ".join("".join(c for c in t.lower() if c.isalnum() or c.isspace()).split())
