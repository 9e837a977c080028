"""MossFormer2 speech separation (port of ClearerVoice-Studio's MossFormer2_SS_16K)."""

from .load import load_model
from .model import ModelArgs, MossFormer2
from .separate import rms_match, separate
from .stream import StreamingSeparator, best_permutation

__all__ = [
    "ModelArgs",
    "MossFormer2",
    "StreamingSeparator",
    "best_permutation",
    "load_model",
    "rms_match",
    "separate",
]
