"""ECAPA-TDNN speaker embeddings (port of SpeechBrain's spkrec-ecapa-voxceleb pipeline)."""

from .embed import SpeakerEncoder, load_ecapa
from .fbank import Fbank, FbankArgs, sentence_mean_norm
from .model import ECAPA_TDNN, EcapaArgs, sanitize

__all__ = [
    "ECAPA_TDNN",
    "EcapaArgs",
    "Fbank",
    "FbankArgs",
    "SpeakerEncoder",
    "load_ecapa",
    "sanitize",
    "sentence_mean_norm",
]
