"""Per-task QA thresholds: what a training task needs from its manifest."""

from __future__ import annotations

from dataclasses import dataclass, replace

from mlx_audio_stack.data.taxonomy import TaxonomyError

# Whisper's limits: 30 s of audio per window (N_SAMPLES = 480000 at 16 kHz) and 448 decoder
# positions (n_text_ctx), of which a few are the start-of-transcript prompt tokens.
WHISPER_MAX_S = 30.0
WHISPER_MAX_TOKENS = 448


@dataclass(frozen=True)
class TaskProfile:
    """What the suite demands for one training task (thresholds apply to the train split)."""

    name: str
    label_task: str | None = None  # taxonomy task whose labels the model learns
    label_from_speaker: bool = False  # labels come from the record's `speaker` field
    needs_text: bool = False
    max_duration: float | None = WHISPER_MAX_S
    max_tokens: int | None = None
    min_duration: float = 0.1
    max_majority: float = 1.0  # largest class share
    max_imbalance: float = float("inf")  # largest / smallest class count
    min_class_count: int = 0
    drift_warn: float = 0.1  # total-variation distance train vs valid/test
    drift_error: float = 0.3
    speaker_disjoint: str | None = "error"  # severity of a speaker seen in two splits, or None
    needs_overlap: bool = False  # speaker count / separation / diarization
    min_overlap_records: int = 1
    description: str = ""


PROFILES: dict[str, TaskProfile] = {
    p.name: p
    for p in (
        TaskProfile(
            "asr",
            needs_text=True,
            max_tokens=WHISPER_MAX_TOKENS,
            speaker_disjoint="warning",
            description="Whisper fine-tuning: text, <= 30 s, <= 448 tokens",
        ),
        TaskProfile(
            "emotion",
            label_task="emotion",
            max_majority=0.5,
            max_imbalance=10.0,
            min_class_count=20,
            description="emotion head on Whisper encoder features",
        ),
        TaskProfile(
            "paralinguistic",
            label_task="paralinguistic",
            max_majority=0.6,
            max_imbalance=20.0,
            min_class_count=10,
            speaker_disjoint="warning",
            description="paralinguistic-event head",
        ),
        TaskProfile(
            "speaker_count",
            label_task="speaker_count",
            max_majority=0.6,
            max_imbalance=20.0,
            min_class_count=10,
            speaker_disjoint="warning",
            needs_overlap=True,
            min_overlap_records=10,
            description="speaker-count head (0-3 simultaneous talkers)",
        ),
        TaskProfile(
            "gender",
            label_task="gender",
            max_majority=0.7,
            max_imbalance=3.0,
            min_class_count=20,
            description="gender head (speaker-level label)",
        ),
        TaskProfile(
            "speaking_rate",
            label_task="speaking_rate",
            max_majority=0.8,
            max_imbalance=10.0,
            min_class_count=10,
            needs_text=True,
            description="speaking-rate head (words per second from the transcript)",
        ),
        TaskProfile(
            "speaker_id",
            label_task="speaker",
            label_from_speaker=True,
            max_imbalance=5.0,
            min_class_count=2,
            speaker_disjoint=None,
            description="closed-set speaker classification (speakers shared by design)",
        ),
        TaskProfile(
            "audio",
            speaker_disjoint="warning",
            description="audio-only use (VAD, embeddings, enhancement): integrity and splits",
        ),
        TaskProfile(
            "diarization",
            max_duration=None,
            needs_overlap=True,
            min_overlap_records=10,
            speaker_disjoint="warning",
            description="diarization / speaker tracking",
        ),
        TaskProfile(
            "separation",
            max_duration=None,
            needs_overlap=True,
            min_overlap_records=10,
            speaker_disjoint="warning",
            description="MossFormer2 separation fine-tuning",
        ),
    )
}


def get_profile(task: str, **overrides) -> TaskProfile:
    """The profile for `task`, with keyword overrides (e.g. min_class_count=5)."""
    if task not in PROFILES:
        raise TaxonomyError(f"unknown QA task {task!r}; known: {sorted(PROFILES)}")
    return replace(PROFILES[task], **overrides) if overrides else PROFILES[task]
