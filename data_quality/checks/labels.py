"""Label checks: taxonomy, stored class indices, balance, drift, consistency, determinism."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections import Counter, defaultdict

from mlx_audio_stack.data import taxonomy
from mlx_audio_stack.data.taxonomy import TaxonomyError

from ..core import Context, Finding, check
from ._util import num, rid

MAX_PER_KIND = 200  # findings of one kind beyond this are summarized in one line


def _labelled(ctx: Context) -> list[tuple[int, dict, str]]:
    return [(i, r, lab) for i, r in enumerate(ctx.records) if (lab := ctx.label_of(r)) is not None]


@check("labels", "labels present and inside the taxonomy; stored class indices match it")
def labels(ctx: Context) -> list[Finding]:
    p = ctx.profile
    if p.label_task is None:
        return []
    task = taxonomy.get_task(p.label_task)
    out, missing = [], 0
    for i, rec in enumerate(ctx.records):
        lab = ctx.label_of(rec)
        if lab is None:
            missing += 1
            if missing <= MAX_PER_KIND:
                out.append(
                    Finding(
                        "labels.missing", "error", rid(rec, i), f"a {p.label_task!r} label", "none"
                    )
                )
        elif task.classes is not None and lab not in task.classes:
            out.append(
                Finding(
                    "labels.taxonomy",
                    "error",
                    rid(rec, i),
                    f"one of {list(task.classes)}",
                    repr(lab),
                )
            )
    if missing > MAX_PER_KIND:
        out.append(
            Finding(
                "labels.missing",
                "error",
                "(more)",
                "a label on every record",
                f"{missing} records without one",
            )
        )
    # Stored class indices (a pipeline's cache): one index per label, one label per index,
    # and the taxonomy's stable mapping. This is where hash(label) % n shows up.
    ids: dict[str, Counter] = defaultdict(Counter)
    for _, rec, lab in _labelled(ctx):
        li = (rec.get("label_ids") or {}).get(p.label_task)
        if isinstance(li, int) and not isinstance(li, bool):
            ids[lab][li] += 1
    if ids:
        try:
            table = taxonomy.mapping(p.label_task, [lab for _, _, lab in _labelled(ctx)])
        except TaxonomyError:
            table = {}
        by_id: dict[int, set] = defaultdict(set)
        for lab, c in sorted(ids.items()):
            for li in c:
                by_id[li].add(lab)
            if len(c) > 1:
                out.append(
                    Finding(
                        "labels.ids_inconsistent",
                        "error",
                        f"label {lab!r}",
                        "one class index",
                        f"indices {dict(c)}",
                    )
                )
            elif lab in table and next(iter(c)) != table[lab]:
                out.append(
                    Finding(
                        "labels.ids_mapping",
                        "error",
                        f"label {lab!r}",
                        f"index {table[lab]} (taxonomy.mapping)",
                        f"index {next(iter(c))}",
                    )
                )
        for li, labs in sorted(by_id.items()):
            if len(labs) > 1:
                out.append(
                    Finding(
                        "labels.ids_collision",
                        "error",
                        f"class index {li}",
                        "one label",
                        f"{len(labs)} labels {sorted(labs)[:6]}",
                    )
                )
    return out


def _counts(ctx: Context, split: str | None) -> Counter:
    return Counter(lab for _, r, lab in _labelled(ctx) if split is None or r.get("split") == split)


@check("balance", "class balance of the training labels (majority share, imbalance, minimum)")
def balance(ctx: Context) -> list[Finding]:
    p = ctx.profile
    if p.label_task is None:
        return []
    c = _counts(ctx, "train")
    where = "train split"
    if not c:
        c, where = _counts(ctx, None), "all records (no train split)"
    if not c:
        return []
    total, out = sum(c.values()), []
    (top, n_top), n_min = c.most_common(1)[0], min(c.values())
    if n_top / total > p.max_majority:
        out.append(
            Finding(
                "balance.majority",
                "error",
                where,
                f"largest class <= {p.max_majority:.0%} ({p.name})",
                f"{top!r} {n_top}/{total} = {n_top / total:.1%}",
            )
        )
    if len(c) == 1 and p.label_task != "speaker":
        out.append(Finding("balance.classes", "error", where, ">= 2 classes", f"only {top!r}"))
    if n_min and n_top / n_min > p.max_imbalance:
        low = min(c, key=lambda k: (c[k], k))
        out.append(
            Finding(
                "balance.imbalance",
                "error",
                where,
                f"largest/smallest <= {p.max_imbalance:g}",
                f"{n_top}/{n_min} = {n_top / n_min:.1f} ({top!r} vs {low!r})",
            )
        )
    for lab, n in sorted(c.items()):
        if n < p.min_class_count:
            out.append(
                Finding(
                    "balance.min_count",
                    "error",
                    f"class {lab!r} ({where})",
                    f">= {p.min_class_count} examples",
                    f"{n}",
                )
            )
    return out


def _tvd(a: Counter, b: Counter) -> float:
    ta, tb = sum(a.values()), sum(b.values())
    return 0.5 * sum(abs(a[k] / ta - b[k] / tb) for k in set(a) | set(b))


@check("drift", "train vs valid/test label distributions (total variation distance)")
def drift(ctx: Context) -> list[Finding]:
    p = ctx.profile
    if p.label_task is None:
        return []
    train, out = _counts(ctx, "train"), []
    for split in ("valid", "test"):
        ev = _counts(ctx, split)
        if not train or not ev:
            continue
        unseen = sorted(set(ev) - set(train))
        if unseen and p.label_task != "speaker":
            out.append(
                Finding(
                    "drift.unseen",
                    "error",
                    f"{split} split",
                    "labels seen in train",
                    f"{unseen[:8]} not in train",
                )
            )
        d = _tvd(train, ev)
        if d > p.drift_warn:
            sev = "error" if d > p.drift_error else "warning"
            out.append(
                Finding(
                    "drift.tvd",
                    sev,
                    f"train vs {split}",
                    f"total variation <= {p.drift_warn:g}",
                    f"{d:.3f}",
                )
            )
    return out


@check("label_consistency", "one label per utterance (and per speaker for speaker-level tasks)")
def label_consistency(ctx: Context) -> list[Finding]:
    p = ctx.profile
    if p.label_task is None:
        return []
    scope = taxonomy.get_task(p.label_task).scope
    by_utt: dict[tuple, set] = defaultdict(set)
    by_spk: dict[str, set] = defaultdict(set)
    for _, r, lab in _labelled(ctx):
        by_utt[(str(r.get("audio")), num(r, "start") or 0.0, num(r, "end"))].add(lab)
        if scope == "speaker" and r.get("speaker"):
            by_spk[str(r["speaker"])].add(lab)
    out = [
        Finding(
            "label_consistency.utterance",
            "error",
            f"{k[0]} [{k[1]}, {k[2]}]",
            "one label",
            f"{sorted(v)}",
        )
        for k, v in by_utt.items()
        if len(v) > 1
    ]
    out += [
        Finding(
            "label_consistency.speaker",
            "error",
            f"speaker {k}",
            f"one {p.label_task} label per speaker",
            f"{sorted(v)}",
        )
        for k, v in sorted(by_spk.items())
        if len(v) > 1
    ]
    return out[:MAX_PER_KIND]


_CHILD = """
import importlib, json, sys
import mlx_audio_stack
req = json.load(sys.stdin)
mod, fn = req["fn"].split(":")
table = getattr(importlib.import_module(mod), fn)(req["task"], req["labels"])
print(json.dumps(sorted((str(k), int(v)) for k, v in table.items())))
"""


def _fresh_mapping(fn: str, task: str, labels: list[str], seed: str) -> dict[str, int]:
    env = dict(os.environ, PYTHONHASHSEED=seed, PYTHONPATH=os.pathsep.join(sys.path))
    r = subprocess.run(
        [sys.executable, "-c", _CHILD],
        input=json.dumps({"fn": fn, "task": task, "labels": labels}),
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    if r.returncode:
        raise RuntimeError(r.stderr.strip().splitlines()[-1] if r.stderr.strip() else "failed")
    return dict(json.loads(r.stdout))


def _diff(a: dict, b: dict) -> str:
    bad = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    return f"{len(bad)} labels differ, e.g. " + ", ".join(
        f"{k!r}: {a.get(k)} vs {b.get(k)}" for k in bad[:3]
    )


@check("determinism", "label mapping identical in fresh processes and under reordering")
def determinism(ctx: Context) -> list[Finding]:
    p = ctx.profile
    if p.label_task is None:
        return []
    labs = [lab for _, _, lab in _labelled(ctx)]
    if not labs:
        return []
    fn = ctx.mapping_fn or "mlx_audio_stack.data.taxonomy:mapping"
    uniq = list(dict.fromkeys(labs))  # first-appearance order, as a streamed dataset sees it
    item, out = f"mapping {fn} ({p.label_task}, {len(set(labs))} labels)", []
    try:
        runs = [_fresh_mapping(fn, p.label_task, uniq, s) for s in ("1", "2")]
    except Exception as exc:
        return [
            Finding(
                "determinism.error",
                "error",
                item,
                "a runnable mapping",
                f"{type(exc).__name__}: {exc}",
            )
        ]
    if runs[0] != runs[1]:
        out.append(
            Finding(
                "determinism.process",
                "error",
                item,
                "the same mapping in two fresh processes",
                _diff(*runs),
            )
        )
    shuffled = uniq[:]
    random.Random(0).shuffle(shuffled)
    again = _fresh_mapping(fn, p.label_task, shuffled, "1")
    if again != runs[0]:
        out.append(
            Finding(
                "determinism.order",
                "error",
                item,
                "the same mapping for the labels in another order",
                _diff(runs[0], again),
            )
        )
    by_idx = defaultdict(list)
    for k, v in runs[0].items():
        by_idx[v].append(k)
    clash = {v: ks for v, ks in by_idx.items() if len(ks) > 1}
    if clash:
        v, ks = next(iter(sorted(clash.items())))
        out.append(
            Finding(
                "determinism.collision",
                "error",
                item,
                "one class index per label",
                f"{len(clash)} indices shared, e.g. {v}: {sorted(ks)[:4]}",
            )
        )
    return out
