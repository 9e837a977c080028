"""mlx-audio-stack: pure-MLX audio models (Whisper, Silero VAD, ECAPA-TDNN, MossFormer2) and
the multi-speaker transcription pipeline.

The public API is imported lazily (`mlx_audio_stack.transcribe(...)` imports Whisper on first
use). Importing this package first loads an optimized BLAS on Linux (see `_blas.py`).
"""

from __future__ import annotations

import importlib

from ._blas import load_blas

load_blas()  # the one import-time step: it must precede `import mlx.core` (see _blas.py)

__version__ = "0.1.0"

# public name -> "module:attribute"; one line per name (each model's issue adds its own)
_API = {
    "convert": "mlx_audio_stack.convert:convert",
    "load_audio": "mlx_audio_stack.audio:load_audio",
    "get_weights": "mlx_audio_stack.weights_get:get_weights",
    "transcribe": "mlx_audio_stack.models.whisper.transcribe:transcribe",
    "load_whisper": "mlx_audio_stack.models.whisper.load:load_model",
    "load_vad": "mlx_audio_stack.models.silero_vad.load:load_model",
    "speech_timestamps": "mlx_audio_stack.models.silero_vad.segments:speech_timestamps",
    "speech_probs": "mlx_audio_stack.models.silero_vad.offline:speech_probs",
    "VADStream": "mlx_audio_stack.models.silero_vad.streaming:VADStream",
    "load_ecapa": "mlx_audio_stack.models.ecapa.load:load_model",
    "SpeakerEncoder": "mlx_audio_stack.models.ecapa.embed:SpeakerEncoder",
    "cosine_score": "mlx_audio_stack.models.ecapa.scoring:cosine_score",
    "load_embedder": "mlx_audio_stack.embedders:load_embedder",
    "default_embedder": "mlx_audio_stack.embedders:default_embedder",
    "load_voice_encoder": "mlx_audio_stack.models.voice_encoder.load:load_model",
    "EmbeddingStream": "mlx_audio_stack.models.voice_encoder.stream:EmbeddingStream",
    "build_manifest": "mlx_audio_stack.data:build_manifest",
    "read_manifest": "mlx_audio_stack.data.manifest:read_manifest",
    "run_qa": "mlx_audio_stack.data.qa:run_qa",
    "require_qa": "mlx_audio_stack.data.gate:require_qa",
    "qa_status": "mlx_audio_stack.data.gate:qa_status",
    "QAGateError": "mlx_audio_stack.data.gate:QAGateError",
    "load_mossformer2": "mlx_audio_stack.models.mossformer2.load:load_model",
    "separate": "mlx_audio_stack.models.mossformer2.separate:separate",
    "StreamingSeparator": "mlx_audio_stack.models.mossformer2.stream:StreamingSeparator",
    "Pipeline": "mlx_audio_stack.pipeline:Pipeline",
    "PipelineConfig": "mlx_audio_stack.pipeline:PipelineConfig",
    "run_pipeline": "mlx_audio_stack.pipeline:run_pipeline",
    "load_speaker_counter": "mlx_audio_stack.models.speaker_count.load:load_model",
    "load_heads": "mlx_audio_stack.heads.load:load_heads",
    "save_heads": "mlx_audio_stack.heads.load:save_heads",
    "cache_features": "mlx_audio_stack.heads.features:cache_features",
    "train_heads": "mlx_audio_stack.heads.train:train_heads",
    "distill_labels": "mlx_audio_stack.heads.distill:distill_labels",
    "distill_train": "mlx_audio_stack.heads.distill:distill_train",
    "load_soft_labels": "mlx_audio_stack.heads.distill:load_soft_labels",
    "predict_heads": "mlx_audio_stack.heads.infer:predict_heads",
}


def __getattr__(name: str):
    target = _API.get(name)
    if target is None:
        raise AttributeError(f"module 'mlx_audio_stack' has no attribute {name!r}")
    module, attr = target.split(":")
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + list(_API))
