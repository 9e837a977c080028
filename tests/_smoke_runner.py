"""Tiny random-config smoke run of one model, torch-free: `python tests/_smoke_runner.py NAME OUT`.

Run by tests/test_model_smoke.py in a fresh interpreter where torch and every reference
library cannot be imported (tests/_blocker). For model NAME it builds a small random config,
writes its weights folder (model.safetensors + config.json), loads it back through the
package's `load.py` `load_model(path)` (after the model's `sanitize`), runs the forward pass on
the CPU and writes a JSON report to OUT: each output's shape, whether it is finite, and which
modules were imported. The test asserts on the report.
"""

# ruff: noqa: I001  (mlx_audio_stack loads the BLAS before mlx is first imported)
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import mlx_audio_stack  # noqa: F401  (BLAS before mlx)
import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten

from mlx_audio_stack.weights_io import save_model_dir

SR = 16000


def _speechlike(seconds: float, seed: int = 0) -> np.ndarray:
    """Noise shaped by a slow envelope (some 'speech', some pauses): (samples,) float32."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 2.0 * np.arange(n) / SR)
    return (0.1 * rng.standard_normal(n) * env).astype(np.float32)


def _save(model, folder: Path, config: dict) -> Path:
    weights = dict(tree_flatten(model.parameters()))
    assert set(model.sanitize(weights)) == set(weights)  # our own names pass unchanged
    return save_model_dir(folder, weights, config)


def _report(**outs) -> dict:
    return {
        k: {"shape": list(np.asarray(v).shape), "finite": bool(np.isfinite(np.asarray(v)).all())}
        for k, v in outs.items()
    }


def whisper(tmp: Path) -> dict:
    from mlx_audio_stack.models.whisper import ModelDimensions, Whisper, load_model

    dims = ModelDimensions(80, 8, 32, 2, 2, 64, 16, 32, 2, 2)
    folder = _save(
        Whisper(dims),
        tmp / "whisper",
        {"model_type": "whisper", "args": dims.to_dict(), "tokenizer": "tokenizer.json"},
    )
    model = load_model(folder, mx.float32)
    mel = mx.array(np.random.default_rng(0).standard_normal((1, 16, 80)).astype(np.float32))
    tokens = mx.array([[1, 2, 3, 4]])
    audio = model.embed_audio(mel)  # (1, 8, 32)
    logits = model(mel, tokens)  # (1, 4, 64)
    return _report(audio_features=audio, logits=logits)


def silero_vad(tmp: Path) -> dict:
    from mlx_audio_stack.models.silero_vad import ModelArgs, SileroVAD, load_model, speech_probs

    args = ModelArgs()
    folder = _save(
        SileroVAD(args),
        tmp / "silero",
        {"model_type": "silero_vad", "args": {"sample_rates": args.sample_rates}},
    )
    model = load_model(folder)
    x = _speechlike(1.0)
    return _report(
        probs_16k=speech_probs(model, x, 16000),  # (32,) one per 512-sample chunk
        probs_8k=speech_probs(model, x[::2].copy(), 8000),  # (32,)
    )


def ecapa(tmp: Path) -> dict:
    from mlx_audio_stack.models.ecapa import ECAPA_TDNN, EcapaArgs, load_model

    args = EcapaArgs(
        input_size=80,
        channels=[16, 16, 16, 16, 48],
        attention_channels=8,
        res2net_scale=4,
        se_channels=8,
        lin_neurons=12,
    )
    folder = _save(ECAPA_TDNN(args), tmp / "ecapa", {"model_type": "ecapa", "args": vars(args)})
    enc = load_model(folder)
    return _report(embeddings=enc.embed([_speechlike(1.0, 1), _speechlike(0.7, 2)]))  # (2, 12)


def mossformer2(tmp: Path) -> dict:
    from mlx_audio_stack.models.mossformer2 import ModelArgs, MossFormer2, load_model

    args = ModelArgs(encoder_embedding_dim=32, mossformer_sequence_dim=32, num_mossformer_layer=1)
    folder = _save(
        MossFormer2(args), tmp / "mf2", {"model_type": "mossformer2", "args": args.to_dict()}
    )
    model = load_model(folder)
    return _report(sources=model(mx.array(_speechlike(0.25)[None])))  # (1, 4000, 2)


def voice_encoder(tmp: Path) -> dict:
    from mlx_audio_stack.models.voice_encoder import VoiceEncoderArgs, VoiceEncoderNet, load_model

    args = VoiceEncoderArgs(model_hidden_size=24, model_embedding_size=16, model_num_layers=2)
    folder = _save(
        VoiceEncoderNet(args), tmp / "ve", {"model_type": "voice_encoder", "args": vars(args)}
    )
    enc = load_model(folder)
    return _report(embeddings=enc.embed([_speechlike(2.0, 3), _speechlike(1.0, 4)]))  # (2, 16)


def speaker_count(tmp: Path) -> dict:
    from mlx_audio_stack.models.speaker_count import (
        ModelArgs,
        SpeakerCounter,
        load_model,
        save_speaker_counter,
    )

    model = SpeakerCounter(ModelArgs(n_mels=16, hidden=16))
    folder = save_speaker_counter(model, tmp / "sc", dtype=mx.float32)
    probs = load_model(folder).count(_speechlike(2.0))  # (20, 4): one row per 0.1 s
    return _report(probs=probs, row_sums=np.asarray(probs).sum(-1))


MODELS = {
    f.__name__: f for f in (whisper, silero_vad, ecapa, mossformer2, voice_encoder, speaker_count)
}


def main() -> None:
    name, out = sys.argv[1], Path(sys.argv[2])
    mx.set_default_device(mx.cpu)
    with tempfile.TemporaryDirectory() as tmp:
        outputs = MODELS[name](Path(tmp))
    try:
        import torch  # noqa: F401

        torch_importable = True
    except ImportError:
        torch_importable = False
    report = {
        "outputs": outputs,
        "torch_importable": torch_importable,
        "reference_modules_loaded": sorted(
            m for m in sys.modules if m.split(".")[0] in _blocked() and sys.modules[m] is not None
        ),
    }
    out.write_text(json.dumps(report))


def _blocked() -> set[str]:
    import os

    return set(filter(None, os.environ.get("MAS_BLOCK_IMPORTS", "").split(",")))


if __name__ == "__main__":
    main()
