"""ECAPA-TDNN speaker embeddings (port of SpeechBrain's spkrec-ecapa-voxceleb pipeline)."""

from .embed import SpeakerEncoder
from .fbank import Fbank, FbankArgs, sentence_mean_norm
from .load import load_ecapa, load_model
from .model import ECAPA_TDNN, EcapaArgs

__all__ = [
    "ECAPA_TDNN",
    "EcapaArgs",
    "Fbank",
    "FbankArgs",
    "SpeakerEncoder",
    "load_ecapa",
    "load_model",
    "sentence_mean_norm",
]
