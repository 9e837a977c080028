"""Split hygiene, duplicates, and whether the data fits the task at all."""

from __future__ import annotations

from collections import Counter, defaultdict

from ..core import Context, Finding, check
from ._util import norm_text, num, rid, seg_end

MAX_PER_KIND = 200
MIN_TEXT_WORDS = 4  # shorter texts ("yes", digits) legitimately repeat across splits


def _splits_str(c: Counter) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(c.items()))


def _leaks(groups: dict, min_splits: int = 2) -> list[tuple[str, Counter]]:
    return [(k, c) for k, c in groups.items() if len(c) >= min_splits]


@check("splits", "no speaker, utterance, text or audio shared between train/valid/test")
def splits(ctx: Context) -> list[Finding]:
    p, out = ctx.profile, []
    present = Counter(r.get("split") for r in ctx.records)
    if ctx.records and not present.get("train"):
        out.append(
            Finding(
                "splits.coverage",
                "warning",
                ctx.manifest.name,
                "a train split to train on",
                _splits_str(present),
            )
        )
    spk: dict[str, Counter] = defaultdict(Counter)
    text: dict[str, Counter] = defaultdict(Counter)
    fp: dict[str, Counter] = defaultdict(Counter)
    segs: dict[str, list] = defaultdict(list)
    file_fp = ctx.cache.get("file_fp", {})
    pcm_fp = ctx.cache.get("pcm_fp", {})
    for i, r in enumerate(ctx.records):
        s = r.get("split")
        for who in ([r["speaker"]] if isinstance(r.get("speaker"), str) else []) + [
            x for x in (r.get("speakers") or []) if x != r.get("speaker")
        ]:
            spk[who][s] += 1
        t = r.get("text")
        if isinstance(t, str) and len(t.split()) >= MIN_TEXT_WORDS:
            text[norm_text(t)][s] += 1
        if isinstance(r.get("audio"), str):
            path = ctx.manifest.audio_file(r)
            segs[file_fp.get(path, path)].append((num(r, "start") or 0.0, seg_end(r), s, i))
        if rid(r, i) in pcm_fp:
            fp[pcm_fp[rid(r, i)]][s] += 1
    if p.speaker_disjoint:
        leaks = _leaks(spk)
        out += [
            Finding(
                "splits.speaker_leak",
                p.speaker_disjoint,
                f"speaker {k}",
                "one split (speaker-disjoint evaluation)",
                _splits_str(c),
            )
            for k, c in sorted(leaks)[:MAX_PER_KIND]
        ]
    if p.label_from_speaker:  # closed-set speaker id: every evaluated speaker must be trained
        out += [
            Finding(
                "splits.unseen_speaker", "error", f"speaker {k}", "present in train", _splits_str(c)
            )
            for k, c in sorted(spk.items())
            if "train" not in c
        ][:MAX_PER_KIND]
    out += [
        Finding("splits.text_leak", "warning", f"text {k[:60]!r}", "one split", _splits_str(c))
        for k, c in sorted(_leaks(text))[:MAX_PER_KIND]
    ]
    out += [
        Finding(
            "splits.audio_leak", "error", f"decoded audio {k[:12]}", "one split", _splits_str(c)
        )
        for k, c in sorted(_leaks(fp))[:MAX_PER_KIND]
    ]
    # the same file (or a byte-identical copy) in two splits: overlapping segments are an
    # audio leak, disjoint ones still share a recording (speakers, room, channel)
    for _key, lst in segs.items():
        if len({s for *_, s, _ in lst}) < 2:
            continue
        lst.sort(key=lambda x: (x[0], x[1] or 0))
        overl = any(a[2] != b[2] and (a[1] is None or b[0] < a[1]) for a, b in zip(lst, lst[1:]))
        c = Counter(s for *_, s, _ in lst)
        name = str(ctx.records[lst[0][3]].get("audio"))
        if overl:
            out.append(
                Finding(
                    "splits.audio_leak",
                    "error",
                    name,
                    "one split per audio",
                    f"overlapping segments in {_splits_str(c)}",
                )
            )
        else:
            out.append(
                Finding(
                    "splits.recording_leak",
                    "warning",
                    name,
                    "one split per recording",
                    _splits_str(c),
                )
            )
    return out


@check("duplicates", "exact duplicates (same audio and segment) and near duplicates")
def duplicates(ctx: Context) -> list[Finding]:
    out = []
    file_fp = ctx.cache.get("file_fp", {})
    pcm_fp = ctx.cache.get("pcm_fp", {})
    exact: dict[tuple, list[str]] = defaultdict(list)
    near: dict[tuple, list[tuple[float, str]]] = defaultdict(list)
    for i, r in enumerate(ctx.records):
        item = rid(r, i)
        if isinstance(r.get("audio"), str):
            path = ctx.manifest.audio_file(r)
            start, end = num(r, "start") or 0.0, seg_end(r)
            exact[
                (file_fp.get(path, path), round(start, 3), None if end is None else round(end, 3))
            ].append(item)
        if item in pcm_fp:
            exact[("pcm", pcm_fp[item])].append(item)
        t, dur = r.get("text"), num(r, "duration")
        if isinstance(t, str) and len(t.split()) >= 3 and dur is not None:
            near[(str(r.get("speaker")), norm_text(t))].append((dur, item))
    seen = set()
    for _, ids in exact.items():
        key = tuple(sorted(set(ids)))
        if len(key) > 1 and key not in seen:
            seen.add(key)
            out.append(
                Finding(
                    "duplicates.exact",
                    "error",
                    key[0],
                    "unique audio",
                    f"same audio as {list(key[1:4])}{' ...' if len(key) > 4 else ''}",
                )
            )
    for (spk, _t), lst in near.items():
        lst.sort()
        for (d0, a), (d1, b) in zip(lst, lst[1:]):
            if d1 - d0 < 0.05 and tuple(sorted((a, b))) not in seen:
                out.append(
                    Finding(
                        "duplicates.near",
                        "warning",
                        a,
                        "distinct utterances",
                        f"{b}: same speaker {spk}, same text, {d0:.2f} vs {d1:.2f} s",
                    )
                )
    return out[: MAX_PER_KIND * 2]


@check("task_fit", "the records can teach the task (e.g. overlap for speaker count)")
def task_fit(ctx: Context) -> list[Finding]:
    p, out = ctx.profile, []
    if p.needs_overlap:
        multi = sum(
            1
            for r in ctx.records
            if len(r.get("speakers") or []) >= 2 and (num(r, "overlap") or 0.0) > 0
        )
        if multi < p.min_overlap_records:
            listed = sum(1 for r in ctx.records if r.get("speakers"))
            why = (
                "no record lists its active speakers: speaker-ID labels on single-speaker "
                "clips are not diarization"
                if not listed
                else "all single-speaker"
            )
            out.append(
                Finding(
                    "task_fit.overlap",
                    "error",
                    ctx.manifest.name,
                    f">= {p.min_overlap_records} records with >= 2 speakers overlapping ({p.name})",
                    f"{multi} of {len(ctx.records)} ({why})",
                )
            )
    if p.label_task == "speaker_count":
        for i, r in enumerate(ctx.records):
            lab = ctx.label_of(r)
            if lab is None or not lab.isdigit():
                continue
            k, spk = int(lab), r.get("speakers")
            ov = num(r, "overlap")
            n = len(spk) if isinstance(spk, list) else (1 if r.get("speaker") else None)
            bad = (n is not None and (k > n or (k == 0) != (n == 0) or (n >= 1 and k == 0))) or (
                k >= 2 and ov is not None and ov <= 0
            )
            if bad:
                out.append(
                    Finding(
                        "task_fit.count_label",
                        "error",
                        rid(r, i),
                        "label <= active speakers, >= 2 only with overlap",
                        f"label {k}, {n} speakers, overlap {ov}",
                    )
                )
    return out[:MAX_PER_KIND]
