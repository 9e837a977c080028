"""Whisper speech recognition in MLX (reference: openai-whisper)."""

from .decoding import DecodingOptions, DecodingResult, decode, detect_language
from .load import load_model
from .model import OFFICIAL_DIMS, ModelDimensions, Whisper
from .transcribe import get_tokenizer, transcribe

__all__ = [
    "DecodingOptions",
    "DecodingResult",
    "ModelDimensions",
    "OFFICIAL_DIMS",
    "Whisper",
    "decode",
    "detect_language",
    "get_tokenizer",
    "load_model",
    "transcribe",
]
