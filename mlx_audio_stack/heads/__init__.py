"""Extra heads on the Whisper encoder (emotion, paralinguistic events, speaker count, gender,
speaking rate): the model, the encoder-feature cache, training."""

from .load import load_heads, save_heads
from .model import HeadsArgs, TaskSpec, WhisperHeads, encoder_flops, heads_flops, pool_time

__all__ = [
    "HeadsArgs",
    "TaskSpec",
    "WhisperHeads",
    "encoder_flops",
    "heads_flops",
    "load_heads",
    "pool_time",
    "save_heads",
]
