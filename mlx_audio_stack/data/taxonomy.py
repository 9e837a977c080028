"""Label taxonomies and the one place where a label string becomes a class index.

Every mapping here is a pure function of its input: fixed class tuples for the closed tasks
(emotion, paralinguistic, speaker count, gender) and *sorted* label sets for open ones (speaker
id). Nothing uses `hash()` (randomized per process), insertion order or set iteration order, so
the same labels give the same indices in every process and every epoch. The QA suite re-runs
`mapping()` in fresh processes with different hash seeds to prove it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..errors import MasError


class TaxonomyError(MasError):
    """A label is outside its task's taxonomy, or a task is unknown."""


@dataclass(frozen=True)
class Task:
    """One labelling task: its closed class list (None = open set, sorted from the data),
    aliases from dataset conventions, and the unit a label belongs to."""

    name: str
    classes: tuple[str, ...] | None
    scope: str  # "utterance": one label per utterance; "speaker": one label per speaker
    aliases: dict[str, str] = field(default_factory=dict)
    description: str = ""


EMOTION = Task(
    "emotion",
    # RAVDESS's eight classes; CREMA-D's six are a subset. Order is the class index: never sort.
    ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"),
    "utterance",
    aliases={
        "neu": "neutral",
        "cal": "calm",
        "hap": "happy",
        "joy": "happy",
        "happiness": "happy",
        "sadness": "sad",
        "ang": "angry",
        "anger": "angry",
        "fea": "fearful",
        "fear": "fearful",
        "dis": "disgust",
        "disgusted": "disgust",
        "sur": "surprised",
        "surprise": "surprised",
    },
    description="categorical emotion of an utterance",
)
PARALINGUISTIC = Task(
    "paralinguistic",
    (
        "speech",
        "laughter",
        "sigh",
        "cough",
        "throat_clear",
        "sneeze",
        "sniff",
        "breath",
        "cry",
        "scream",
    ),
    "utterance",
    aliases={
        "laugh": "laughter",
        "throatclearing": "throat_clear",
        "throat_clearing": "throat_clear",
        "sighs": "sigh",
        "coughs": "cough",
        "crying": "cry",
        "breathing": "breath",
    },
    description="dominant non-lexical vocal event of a segment",
)
SPEAKER_COUNT = Task(
    "speaker_count",
    # most simultaneous talkers in the segment; the pipeline separates 2 or 3 speakers
    ("0", "1", "2", "3"),
    "utterance",
    aliases={"none": "0", "one": "1", "two": "2", "three": "3", "3+": "3"},
    description="maximum number of simultaneously active speakers (3 means 3 or more)",
)
GENDER = Task(
    "gender",
    ("female", "male"),
    "speaker",
    aliases={"f": "female", "m": "male", "woman": "female", "man": "male"},
    description="speaker gender as given by the corpus metadata",
)
SPEAKER = Task("speaker", None, "speaker", description="speaker identity (open set)")

TASKS: dict[str, Task] = {
    t.name: t for t in (EMOTION, PARALINGUISTIC, SPEAKER_COUNT, GENDER, SPEAKER)
}


def get_task(name: str) -> Task:
    """The taxonomy task called `name` (raises TaxonomyError listing the known ones)."""
    try:
        return TASKS[name]
    except KeyError:
        raise TaxonomyError(f"unknown label task {name!r}; known: {sorted(TASKS)}") from None


def normalize(task: str, raw: str | int) -> str:
    """Map a dataset's label spelling to the canonical class name, or raise TaxonomyError."""
    t = get_task(task)
    s = str(raw).strip()
    if t.classes is None:
        if not s:
            raise TaxonomyError(f"{task}: empty label")
        return s
    key = s.lower().replace(" ", "_").replace("-", "_")
    if key in t.classes:
        return key
    if key in t.aliases:
        return t.aliases[key]
    raise TaxonomyError(f"{task}: label {raw!r} is not in the taxonomy {list(t.classes)}")


def classes(task: str, labels: Iterable[str] | None = None) -> tuple[str, ...]:
    """The class list of `task`: fixed for closed tasks, sorted(set(labels)) for open ones."""
    t = get_task(task)
    if t.classes is not None:
        return t.classes
    if labels is None:
        raise TaxonomyError(f"{task}: an open-set task needs the labels to build its classes")
    return tuple(sorted({str(x) for x in labels}))


def mapping(task: str, labels: Iterable[str] | None = None) -> dict[str, int]:
    """label -> class index. Deterministic: same input, same mapping, in any process."""
    return {c: i for i, c in enumerate(classes(task, labels))}


def mapping_digest(task: str, labels: Iterable[str] | None = None) -> str:
    """sha256 of the mapping as canonical JSON: compare mappings across processes/runs."""
    m = mapping(task, labels)
    return hashlib.sha256(json.dumps(sorted(m.items())).encode()).hexdigest()


def encode(task: str, label: str, table: dict[str, int] | None = None) -> int:
    """Class index of `label` (canonical spelling) under `table` (default: the task mapping)."""
    table = table if table is not None else mapping(task)
    try:
        return table[label]
    except KeyError:
        raise TaxonomyError(
            f"{task}: label {label!r} has no class index; known: {list(table)[:20]}"
        ) from None
