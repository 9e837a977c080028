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
    multi_label: bool = False  # several classes at once (sigmoid per class)
    frame_level: bool = False  # also labelled per frame (`extra.frame_labels`)


# emotion2vec+ (seed/base/large) scores these 9 classes in this order: its `tokens.txt`,
# https://huggingface.co/emotion2vec/emotion2vec_plus_large/blob/main/tokens.txt
# (生气/angry 厌恶/disgusted 恐惧/fearful 开心/happy 中立/neutral 其他/other 难过/sad 吃惊/surprised
# <unk>). Keeping its order lets its probabilities serve as soft labels index for index.
# Order is the class index: never sort.
EMOTION = Task(
    "emotion",
    ("angry", "disgusted", "fearful", "happy", "neutral", "other", "sad", "surprised", "unknown"),
    "utterance",
    aliases={
        # RAVDESS names / CREMA-D and IEMOCAP codes
        "ang": "angry",
        "anger": "angry",
        "dis": "disgusted",
        "disgust": "disgusted",
        "fea": "fearful",
        "fear": "fearful",
        "hap": "happy",
        "joy": "happy",
        "happiness": "happy",
        "exc": "happy",  # IEMOCAP 'excited', merged into happy as is usual for 4-class IEMOCAP
        "excited": "happy",
        "neu": "neutral",
        # RAVDESS 'calm': emotion2vec+ has no such class; a low-arousal neutral is the closest
        "cal": "neutral",
        "calm": "neutral",
        "oth": "other",
        "fru": "other",  # IEMOCAP frustration
        "frustrated": "other",
        "contempt": "other",
        "sadness": "sad",
        "sur": "surprised",
        "surprise": "surprised",
        "<unk>": "unknown",
        "unk": "unknown",
        "xxx": "unknown",  # IEMOCAP: annotators did not agree
    },
    description="categorical emotion of an utterance (emotion2vec+'s 9 classes)",
)

# Paralinguistic events: AudioSet ontology classes (the "Human sounds" branch, plus Music and
# Silence so a segment always has a positive class), canonical key -> AudioSet display name
# (http://research.google.com/audioset/ontology; names as in its class_labels_indices.csv).
# Multi-label: a record's `labels.paralinguistic` holds its dominant event (what the QA suite
# checks); `extra.events`, when present, lists every event in it (the multi-hot target).
AUDIOSET_NAMES: dict[str, str] = {
    "speech": "Speech",
    "male_speech": "Male speech, man speaking",
    "female_speech": "Female speech, woman speaking",
    "child_speech": "Child speech, kid speaking",
    "conversation": "Conversation",
    "narration": "Narration, monologue",
    "babbling": "Babbling",
    "shout": "Shout",
    "bellow": "Bellow",
    "whoop": "Whoop",
    "yell": "Yell",
    "children_shouting": "Children shouting",
    "screaming": "Screaming",
    "whispering": "Whispering",
    "laughter": "Laughter",
    "baby_laughter": "Baby laughter",
    "giggle": "Giggle",
    "snicker": "Snicker",
    "belly_laugh": "Belly laugh",
    "chuckle": "Chuckle, chortle",
    "crying": "Crying, sobbing",
    "baby_cry": "Baby cry, infant cry",
    "whimper": "Whimper",
    "wail": "Wail, moan",
    "sigh": "Sigh",
    "singing": "Singing",
    "humming": "Humming",
    "groan": "Groan",
    "grunt": "Grunt",
    "whistling": "Whistling",
    "breathing": "Breathing",
    "wheeze": "Wheeze",
    "snoring": "Snoring",
    "gasp": "Gasp",
    "pant": "Pant",
    "snort": "Snort",
    "cough": "Cough",
    "throat_clearing": "Throat clearing",
    "sneeze": "Sneeze",
    "sniff": "Sniff",
    "chewing": "Chewing, mastication",
    "gargling": "Gargling",
    "burping": "Burping, eructation",
    "hiccup": "Hiccup",
    "finger_snapping": "Finger snapping",
    "clapping": "Clapping",
    "cheering": "Cheering",
    "applause": "Applause",
    "chatter": "Chatter",
    "crowd": "Crowd",
    "babble": "Hubbub, speech noise, speech babble",
    "music": "Music",
    "silence": "Silence",
}


def _audioset_aliases() -> dict[str, str]:
    # every AudioSet display name (and each comma-separated part of it) spelled as a key
    out = {}
    for key, name in AUDIOSET_NAMES.items():
        for part in (name, *name.split(",")):
            k = part.strip().lower().replace(" ", "_").replace("-", "_")
            if k and k != key:
                out.setdefault(k, key)
    return out


PARALINGUISTIC = Task(
    "paralinguistic",
    tuple(AUDIOSET_NAMES),  # order is the class index: append new classes, never reorder
    "utterance",
    aliases={
        **_audioset_aliases(),
        # this taxonomy's earlier 10-class spellings
        "laugh": "laughter",
        "throat_clear": "throat_clearing",
        "throatclearing": "throat_clearing",
        "sighs": "sigh",
        "coughs": "cough",
        "cry": "crying",
        "breath": "breathing",
        "scream": "screaming",
    },
    description="non-lexical vocal events of a segment (AudioSet names; multi-label)",
    multi_label=True,
)
SPEAKER_COUNT = Task(
    "speaker_count",
    # most simultaneous talkers in the segment; the pipeline separates 2 or 3 speakers
    ("0", "1", "2", "3"),
    "utterance",
    aliases={"none": "0", "one": "1", "two": "2", "three": "3", "3+": "3"},
    description="maximum number of simultaneously active speakers (3 means 3 or more)",
    frame_level=True,
)
GENDER = Task(
    "gender",
    ("female", "male"),
    "speaker",
    aliases={"f": "female", "m": "male", "woman": "female", "man": "male"},
    description="speaker gender as given by the corpus metadata",
)

# Speaking rate in words per second over the utterance (pauses inside it count). Thresholds
# are the quartiles, rounded to 0.05, measured on the 105 transcribed LibriSpeech utterances of
# the shared data (test-other, test-clean, dev-clean: 25th percentile 2.06 w/s, median 2.44,
# 75th 2.74; mean 2.42): read speech; conversational speech runs faster, so a user's data may
# sit higher. slow < SLOW_WPS <= normal <= FAST_WPS < fast.
SLOW_WPS = 2.05
FAST_WPS = 2.75
SPEAKING_RATE = Task(
    "speaking_rate",
    ("slow", "normal", "fast"),
    "utterance",
    aliases={"medium": "normal", "average": "normal"},
    description=f"words per second: slow < {SLOW_WPS}, fast > {FAST_WPS}",
)
SPEAKER = Task("speaker", None, "speaker", description="speaker identity (open set)")

TASKS: dict[str, Task] = {
    t.name: t for t in (EMOTION, PARALINGUISTIC, SPEAKER_COUNT, GENDER, SPEAKING_RATE, SPEAKER)
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


def speaking_rate(words: int, seconds: float) -> str:
    """The speaking-rate class of `words` spoken in `seconds` (see SLOW_WPS / FAST_WPS)."""
    if seconds <= 0:
        raise TaxonomyError(f"speaking_rate: duration must be > 0 s, got {seconds}")
    wps = words / seconds
    return "slow" if wps < SLOW_WPS else "fast" if wps > FAST_WPS else "normal"


def multi_hot(task: str, labels: Iterable[str]) -> list[int]:
    """0/1 per class of a closed task: the multi-label target of `labels` (aliases allowed)."""
    t = get_task(task)
    if t.classes is None:
        raise TaxonomyError(f"{task}: an open-set task has no multi-hot encoding")
    on = {normalize(task, lab) for lab in labels}
    return [int(c in on) for c in t.classes]
