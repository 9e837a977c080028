"""Schema and cross-field consistency (no audio is read)."""

from __future__ import annotations

from collections import Counter

from mlx_audio_stack.data.manifest import FIELDS, SPLITS

from ..core import Context, Finding, check
from ._util import num, rid

TOL_S = 0.002  # duration arithmetic tolerance: rounding to ms plus one sample at 8 kHz


@check("schema", "required fields, types and value ranges; unique ids; parseable lines")
def schema(ctx: Context) -> list[Finding]:
    out = [
        Finding("schema.parse", "error", f"line {n}", "a JSON object", msg)
        for n, msg in ctx.manifest.parse_errors
    ]
    if not ctx.records:
        out.append(Finding("schema.empty", "error", ctx.manifest.name, ">= 1 record", "0"))
    required = [k for k, (_, req, _) in FIELDS.items() if req]
    for i, rec in enumerate(ctx.records):
        item = rid(rec, i)
        for k in required:
            if rec.get(k) is None:
                out.append(Finding("schema.missing", "error", item, f"field {k!r}", "absent"))
        for k, v in rec.items():
            spec = FIELDS.get(k)
            if spec is None or v is None:
                continue
            types = spec[0]
            if isinstance(v, bool) or not isinstance(v, types):
                out.append(
                    Finding(
                        "schema.type",
                        "error",
                        item,
                        f"{k} of type {'/'.join(t.__name__ for t in types)}",
                        f"{type(v).__name__} {v!r:.40}",
                    )
                )
        for k in ("duration", "sample_rate", "channels"):
            v = num(rec, k)
            if v is not None and v <= 0:
                out.append(Finding("schema.range", "error", item, f"{k} > 0", str(rec[k])))
        split = rec.get("split")
        if isinstance(split, str) and split not in SPLITS:
            out.append(Finding("schema.split", "error", item, f"split in {SPLITS}", repr(split)))
        for k in ("labels", "label_ids"):
            d = rec.get(k)
            if isinstance(d, dict):
                for t, v in d.items():
                    want = int if k == "label_ids" else str
                    if not isinstance(v, want) or isinstance(v, bool):
                        out.append(
                            Finding(
                                "schema.type",
                                "error",
                                item,
                                f"{k}[{t!r}] of type {want.__name__}",
                                repr(v),
                            )
                        )
        sp = rec.get("speakers")
        if isinstance(sp, list) and not all(isinstance(s, str) for s in sp):
            out.append(Finding("schema.type", "error", item, "speakers: list of str", repr(sp)))
    dup = [
        k for k, n in Counter(r.get("id") for r in ctx.records).items() if n > 1 and k is not None
    ]
    out += [
        Finding(
            "schema.id_unique",
            "error",
            str(k),
            "a unique id",
            f"{sum(1 for r in ctx.records if r.get('id') == k)} records",
        )
        for k in dup
    ]
    return out


@check("consistency", "duration == end - start == num_samples / rate; segment inside recording")
def consistency(ctx: Context) -> list[Finding]:
    out = []
    for i, rec in enumerate(ctx.records):
        item = rid(rec, i)
        dur, start, end = num(rec, "duration"), num(rec, "start") or 0.0, num(rec, "end")
        sr, ns = num(rec, "sample_rate"), num(rec, "num_samples")
        if start < 0:
            out.append(Finding("consistency.segment", "error", item, "start >= 0", f"{start}"))
        if end is not None:
            if end <= start:
                out.append(
                    Finding(
                        "consistency.segment", "error", item, f"end > start {start}", f"end {end}"
                    )
                )
            elif dur is not None and abs((end - start) - dur) > TOL_S:
                out.append(
                    Finding(
                        "consistency.duration",
                        "error",
                        item,
                        f"duration == end - start = {end - start:.3f}",
                        f"{dur:.3f}",
                    )
                )
        if dur is not None and sr and ns is not None and abs(ns / sr - dur) > TOL_S + 1 / sr:
            out.append(
                Finding(
                    "consistency.duration",
                    "error",
                    item,
                    f"duration == num_samples / sample_rate = {ns / sr:.4f} s",
                    f"{dur:.4f} s",
                )
            )
        rdur = num(rec, "recording_duration")
        stop = end if end is not None else (None if dur is None else start + dur)
        if rdur is not None and stop is not None and stop > rdur + TOL_S:
            out.append(
                Finding(
                    "consistency.segment",
                    "error",
                    item,
                    f"segment end <= recording duration {rdur:.3f} s",
                    f"{stop:.3f} s",
                )
            )
        ov = num(rec, "overlap")
        if ov is not None and dur is not None and not 0 <= ov <= dur + TOL_S:
            out.append(
                Finding(
                    "consistency.overlap",
                    "error",
                    item,
                    f"0 <= overlap <= duration {dur:.3f}",
                    f"{ov:.3f}",
                )
            )
        spk, spks = rec.get("speaker"), rec.get("speakers")
        if isinstance(spk, str) and isinstance(spks, list) and spks and spk not in spks:
            out.append(
                Finding(
                    "consistency.speaker",
                    "error",
                    item,
                    f"speaker in speakers {spks[:4]}",
                    repr(spk),
                )
            )
    return out
