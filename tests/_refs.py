"""PyTorch reference builders shared by parity tests and benchmarks (tools/ import this too).
Nothing here is needed at run time; torch and openai-whisper are test extras."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def openai_whisper_from_converted(folder: str | Path):
    """openai-whisper `Whisper` (torch, fp32) holding exactly the weights of a converted folder."""
    import torch
    import whisper
    from safetensors.numpy import load_file

    folder = Path(folder)
    cfg = json.loads((folder / "config.json").read_text())
    if cfg.get("quantization") or cfg.get("dtype") != "float32":
        raise ValueError(f"{folder}: the reference needs an unquantized float32 conversion")
    dims = whisper.model.ModelDimensions(**cfg["args"])
    model = whisper.model.Whisper(dims)
    sd = {}
    for k, v in load_file(str(folder / "model.safetensors")).items():
        k = k.replace(".mlp1.", ".mlp.0.").replace(".mlp2.", ".mlp.2.")
        if k.endswith(("conv1.weight", "conv2.weight")):
            v = np.ascontiguousarray(v.transpose(0, 2, 1))  # (O, K, I) -> (O, I, K)
        sd[k] = torch.from_numpy(np.ascontiguousarray(v))
    sd["encoder.positional_embedding"] = model.encoder.positional_embedding
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise ValueError(f"reference load: missing {missing}, unexpected {unexpected}")
    if cfg.get("alignment_heads"):
        heads = np.zeros((dims.n_text_layer, dims.n_text_head), dtype=bool)
        for layer, head in cfg["alignment_heads"]:
            heads[layer, head] = True
        model.register_buffer(
            "alignment_heads", torch.from_numpy(heads).to_sparse(), persistent=False
        )
    return model.eval()
