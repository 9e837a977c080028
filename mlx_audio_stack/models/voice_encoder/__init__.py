"""Resemblyzer's GE2E voice encoder (speaker embeddings, 256-d) in MLX."""

from .embed import VoiceEncoder, load_voice_encoder
from .model import LSTM, VoiceEncoderArgs, VoiceEncoderNet, sanitize
from .stream import EmbeddingStream, StreamState

__all__ = [
    "LSTM",
    "EmbeddingStream",
    "StreamState",
    "VoiceEncoder",
    "VoiceEncoderArgs",
    "VoiceEncoderNet",
    "load_voice_encoder",
    "sanitize",
]
