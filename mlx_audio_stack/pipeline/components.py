"""Finding and loading each stage's weights. Missing optional weights degrade the run
clearly (one note each, printed and kept in the result), never silently."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..errors import WeightsError
from ..paths import weights_dir

# Whisper weights tried in this order when none is named (tiny.en first: real time on a CPU)
WHISPER_DEFAULTS = (
    "whisper-tiny.en",
    "whisper-base",
    "whisper-small",
    "whisper-medium",
    "whisper-large-v3",
    "whisper-turbo",
)
# The tracker compares a 0.5-2 s piece with a speaker's centroid (the mean of its pieces).
# Voice encoder: piece against piece on LibriSpeech test-other (8 speakers, 1-2 s) 0.7 missed
# 31 % of same-speaker pairs and accepted 0.15 % of others; against centroids, on the demo
# meeting's noisy 2 s pieces, 0.6 and 0.65 merged speakers (a centroid that took one wrong piece
# draws the rest) while 0.7 and 0.75 tracked all three. ECAPA: its verification threshold.
TRACKER_THRESHOLDS = {"voice-encoder": 0.7, "ecapa": 0.25}
SEPARATOR_DEFAULTS = ("mossformer2-ss-16k", "mossformer2-ss-16k-3spk", "mossformer2-whamr-16k")


def _folder(x) -> Path | None:
    return Path(x) if isinstance(x, (str, Path)) else None


def _first_converted(names) -> Path | None:
    """The first of weights/<name> (in `names` order) that holds converted weights."""
    for name in names:
        if (weights_dir() / name / "config.json").exists():
            return weights_dir() / name
    return None


def load_whisper(whisper):
    from ..models.whisper.load import load_cached
    from ..models.whisper.model import Whisper

    if isinstance(whisper, Whisper):
        return whisper
    path = _folder(whisper) or _first_converted(WHISPER_DEFAULTS)
    if path is None:
        raise WeightsError(
            f"no Whisper weights under {weights_dir()}: run `mas weights get whisper-tiny.en`"
            " (or pass --model FOLDER)"
        )
    return load_cached(str(path))


def load_vad(vad):
    from ..models.silero_vad.load import load_vad as _load

    if vad is not None and not isinstance(vad, (str, Path)):
        return vad
    path = _folder(vad) or weights_dir() / "silero-vad"
    if not (path / "config.json").exists():
        raise WeightsError(
            f"{path}: no Silero VAD weights (the pipeline skips silence with them): "
            "run `mas weights get silero-vad`"
        )
    return _load(path)


def load_embedder(embedder, note: Callable[[str], None]):
    """An embedder object (with .embed, .name), or None when there is none (noted)."""
    if embedder is False:
        note("speaker embedder off: every speech piece goes to S1")
        return None
    if embedder is not None and not isinstance(embedder, (str, Path)):
        return embedder
    from ..embedders import default_embedder
    from ..embedders import load_embedder as _load

    if embedder is not None:
        return _load(embedder)
    try:
        emb, name = default_embedder()
    except WeightsError as exc:
        note(f"no speaker embedder ({exc}): every speech piece goes to S1")
        return None
    note(f"speaker embedder: {name}")
    return emb


def tracker_threshold(embedder) -> float:
    name = getattr(embedder, "name", None)
    return TRACKER_THRESHOLDS.get(name, getattr(embedder, "threshold", 0.5))


def load_separator(separator, note: Callable[[str], None]):
    """The separation stage, or None (noted). By default every source count found under
    weights/ (SEPARATOR_DEFAULTS order, the first of each count): a piece goes to the model
    that separates as many voices as the overlap detector counted (`stages.Separator`).
    A folder, a loaded model or a tuple of loaded models is used as given."""
    from .stages import Separator

    if separator is False:
        note("separation off: overlapped speech goes to the dominant speaker")
        return None
    if isinstance(separator, (tuple, list)):
        return Separator(*separator, note=note)
    if separator is not None and not isinstance(separator, (str, Path)):
        import mlx.nn as nn

        # a loaded MossFormer2 is callable too: it is wrapped; any other object is the stage
        return Separator(separator, note=note) if isinstance(separator, nn.Module) else separator
    from ..models.mossformer2.load import load_model

    paths = [_folder(separator)] if separator is not None else _by_count(SEPARATOR_DEFAULTS)
    if not paths:
        note(
            "no separation weights (weights/mossformer2-ss-16k; `mas weights get "
            "mossformer2-ss-16k` on a connected machine): overlapped speech goes to the "
            "dominant speaker"
        )
        return None
    return Separator(*(load_model(p) for p in paths), note=note)


def _by_count(names) -> list[Path]:
    """The first converted weights/<name> (in `names` order) of each source count."""
    import json

    found: dict[int, Path] = {}
    for name in names:
        cfg = weights_dir() / name / "config.json"
        if cfg.exists():
            try:
                n = int(json.loads(cfg.read_text()).get("args", {}).get("num_spks", 2))
            except (ValueError, TypeError, AttributeError):
                n = 2  # a broken config: load_model says what is wrong with it
            found.setdefault(n, cfg.parent)
    return [found[n] for n in sorted(found)]


def count_heads_folders() -> list[Path]:
    """weights/heads-* folders whose heads have a speaker_count task and whose Whisper encoder
    is converted under weights/ (so they can run as the overlap detector), in name order."""
    import json

    from ..heads.model import MODEL_TYPE as HEADS_TYPE

    found = []
    for d in sorted(weights_dir().glob("heads-*")):
        try:
            cfg = json.loads((d / "config.json").read_text(encoding="utf-8"))
            tasks = [t.get("name") for t in cfg["args"]["tasks"]]
            encoder = cfg["encoder"]["model"]
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
        ok = cfg.get("model_type") == HEADS_TYPE and "speaker_count" in tasks
        if ok and isinstance(encoder, str) and (weights_dir() / encoder / "config.json").exists():
            found.append(d)
    return found


def _heads_detector(folder, note: Callable[[str], None]):
    from .overlap import heads_overlap

    det = heads_overlap(folder)
    note(f"overlap detector: speaker-count heads {folder} (encoder {det.encoder_name})")
    return det


def load_overlap(overlap, note: Callable[[str], None]):
    """The overlap stage: False = none; a heads folder; "counter" = the shipped speaker
    counter; None = the speaker-count heads of the heads issue when weights/heads-* holds
    them (with their encoder), else the shipped counter."""
    from .stages import NoOverlapDetector

    if overlap is False:
        note("overlap detection off: every speech piece counts as one speaker")
        return NoOverlapDetector()
    if overlap is None:
        for folder in count_heads_folders():
            try:
                return _heads_detector(folder, note)
            except WeightsError as exc:  # a broken default does not stop the run
                note(f"overlap detector: {folder} not used ({exc})")
        overlap = "counter"
    if isinstance(overlap, (str, Path)) and str(overlap) != "counter":
        return _heads_detector(overlap, note)
    if not isinstance(overlap, (str, Path)):
        return overlap
    try:
        from .overlap import default_overlap_detector
    except ImportError:
        default_overlap_detector = None
    det = default_overlap_detector() if default_overlap_detector else None
    if det is None:
        note("no overlap detector: every speech piece counts as one speaker")
        return NoOverlapDetector()
    return det
