"""Resemblyzer's GE2E voice encoder (speaker embeddings, 256-d) in MLX."""

from .embed import VoiceEncoder
from .load import load_model, load_voice_encoder
from .model import LSTM, VoiceEncoderArgs, VoiceEncoderNet
from .stream import EmbeddingStream, StreamState

__all__ = [
    "LSTM",
    "EmbeddingStream",
    "StreamState",
    "VoiceEncoder",
    "VoiceEncoderArgs",
    "VoiceEncoderNet",
    "load_model",
    "load_voice_encoder",
]
