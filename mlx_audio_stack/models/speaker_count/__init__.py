"""Speaker counter / overlap detector: per 0.1 s, the probability that 0, 1, 2 or 3+ people
speak (a small model trained here: tools/train_speaker_count.py; weights shipped in
assets/speaker_count). `load_model()` (alias `load_speaker_counter`) returns a
`SpeakerCountDetector` with `count(audio) -> (F, 4)` and the streaming `init_state()`,
`step(state, chunk)`, `flush(state)`.
"""

from .detector import CountState, SpeakerCountDetector
from .load import load_model, load_speaker_counter, model_from_weights, save_speaker_counter
from .model import ModelArgs, SpeakerCounter

__all__ = [
    "CountState",
    "ModelArgs",
    "SpeakerCountDetector",
    "SpeakerCounter",
    "load_model",
    "load_speaker_counter",
    "model_from_weights",
    "save_speaker_counter",
]
