"""Emotion corpora identified by their file-name conventions: RAVDESS and CREMA-D.

RAVDESS `MM-VV-EE-II-SS-RR-AA.wav`: modality (03 audio-only), vocal channel (01 speech,
02 song), emotion (01..08), intensity (01 normal, 02 strong), statement (01/02), repetition,
actor (01..24; odd male, even female).
CREMA-D `AAAA_SSS_EEE_LL.wav`: actor 1001..1091, sentence code, emotion (ANG DIS FEA HAP NEU
SAD), level (LO MD HI XX). Gender comes from VideoDemographics.csv when it is beside the audio.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from ..manifest import ManifestError, assign_splits
from ..taxonomy import normalize
from ._probe import file_record

# labels in the taxonomy's emotion2vec+ classes; RAVDESS 'calm' (02) has none of its own and is
# labelled neutral (the RAVDESS name stays in `extra.corpus_emotion`)
RAVDESS_NAMES = {
    "01": "neutral",
    "02": "calm",
    "03": "happy",
    "04": "sad",
    "05": "angry",
    "06": "fearful",
    "07": "disgust",
    "08": "surprised",
}
RAVDESS_EMOTIONS = {
    "01": "neutral",
    "02": "neutral",
    "03": "happy",
    "04": "sad",
    "05": "angry",
    "06": "fearful",
    "07": "disgusted",
    "08": "surprised",
}
RAVDESS_STATEMENTS = {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}
CREMAD_EMOTIONS = {
    "ANG": "angry",
    "DIS": "disgusted",
    "FEA": "fearful",
    "HAP": "happy",
    "NEU": "neutral",
    "SAD": "sad",
}
CREMAD_SENTENCES = {
    "IEO": "It's eleven o'clock",
    "TIE": "That is exactly what happened",
    "IOM": "I'm on my way to the meeting",
    "IWW": "I wonder what this is about",
    "TAI": "The airplane is almost full",
    "MTI": "Maybe tomorrow it will be cold",
    "IWL": "I would like a new alarm clock",
    "ITH": "I think I have a doctor's appointment",
    "DFA": "Don't forget a jacket",
    "ITS": "I think I've seen this before",
    "TSI": "The surface is slick",
    "WSI": "We'll stop in a couple of minutes",
}


def _split(records: list[dict], split: str | None, seed: int) -> list[dict]:
    # speaker-disjoint by default: emotion models are evaluated on unseen speakers
    if split is not None:
        return [{**r, "split": split} for r in records]
    return assign_splits(records, valid=0.1, test=0.1, by="speaker", seed=seed)


def build_ravdess(
    root: str | Path,
    split: str | None = None,
    seed: int = 0,
    dataset: str = "ravdess",
    license: str = "CC-BY-NC-SA-4.0",
) -> list[dict]:
    """RAVDESS audio files under `root` (any folder layout); speaker-disjoint splits."""
    root = Path(root)
    records = []
    for wav in sorted(root.rglob("*.wav")):
        parts = wav.stem.split("-")
        if len(parts) != 7 or not all(re.fullmatch(r"\d\d", p) for p in parts):
            continue
        modality, channel, emo, intensity, statement, rep, actor = parts
        if emo not in RAVDESS_EMOTIONS:
            raise ManifestError(f"{wav}: emotion code {emo!r} not in {sorted(RAVDESS_EMOTIONS)}")
        gender = "male" if int(actor) % 2 else "female"
        records.append(
            file_record(
                wav,
                f"ravdess-{wav.stem}",
                dataset,
                license,
                "train",
                speaker=f"ravdess-{actor}",
                text=RAVDESS_STATEMENTS.get(statement),
                labels={"emotion": RAVDESS_EMOTIONS[emo], "gender": gender, "speaker_count": "1"},
                extra={
                    "intensity": "strong" if intensity == "02" else "normal",
                    "vocal_channel": "song" if channel == "02" else "speech",
                    "repetition": int(rep),
                    "modality": modality,
                    "corpus_emotion": RAVDESS_NAMES[emo],
                },
            )
        )
    if not records:
        raise ManifestError(f"{root}: no RAVDESS MM-VV-EE-II-SS-RR-AA.wav files")
    return _split(records, split, seed)


def _cremad_genders(root: Path) -> dict[str, str]:
    for p in (root / "VideoDemographics.csv", root.parent / "VideoDemographics.csv"):
        if p.is_file():
            with open(p, newline="", encoding="utf-8") as f:
                return {
                    row["ActorID"].strip(): normalize("gender", row["Sex"])
                    for row in csv.DictReader(f)
                    if row.get("Sex")
                }
    return {}


def build_cremad(
    root: str | Path,
    split: str | None = None,
    seed: int = 0,
    dataset: str = "crema-d",
    license: str = "ODbL-1.0",
) -> list[dict]:
    """CREMA-D `AudioWAV/*.wav` (or any folder of such names); speaker-disjoint splits."""
    root = Path(root)
    genders = _cremad_genders(root)
    records = []
    for wav in sorted(root.rglob("*.wav")):
        m = re.fullmatch(r"(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})", wav.stem)
        if not m:
            continue
        actor, sent, emo, level = m.groups()
        if emo not in CREMAD_EMOTIONS:
            raise ManifestError(f"{wav}: emotion code {emo!r} not in {sorted(CREMAD_EMOTIONS)}")
        labels = {"emotion": CREMAD_EMOTIONS[emo], "speaker_count": "1"}
        if actor in genders:
            labels["gender"] = genders[actor]
        records.append(
            file_record(
                wav,
                f"cremad-{wav.stem}",
                dataset,
                license,
                "train",
                speaker=f"cremad-{actor}",
                text=CREMAD_SENTENCES.get(sent),
                labels=labels,
                extra={
                    "level": {"LO": "low", "MD": "medium", "HI": "high"}.get(level, "unspecified"),
                    "sentence": sent,
                },
            )
        )
    if not records:
        raise ManifestError(f"{root}: no CREMA-D AAAA_SSS_EEE_LL.wav files")
    return _split(records, split, seed)
