"""Silero VAD v5/v6 in MLX: streaming (`VADStream`, `vad_step`), whole-file probabilities
(`speech_probs`) and speech segments (`speech_timestamps`, silero's `get_speech_timestamps`
semantics). Weights: `mas weights get silero-vad` (from the installed silero-vad package)."""

from .load import load_model, load_vad, model_from_weights
from .model import BRANCH_8K, BRANCH_16K, BranchArgs, ModelArgs, SileroVAD
from .offline import speech_probs
from .segments import VADOptionError, speech_timestamps, timestamps_from_probs
from .streaming import VADEvents, VADState, VADStream, initial_state, vad_step

__all__ = [
    "BRANCH_16K",
    "BRANCH_8K",
    "BranchArgs",
    "ModelArgs",
    "SileroVAD",
    "VADEvents",
    "VADOptionError",
    "VADState",
    "VADStream",
    "initial_state",
    "load_model",
    "load_vad",
    "model_from_weights",
    "speech_probs",
    "speech_timestamps",
    "timestamps_from_probs",
    "vad_step",
]
