"""Running trained heads on audio: per transcript segment from the encoder pass that
`transcribe` already makes, or alone (`predict_heads`: per 30 s window, and per 0.1 s frame
for frame-level tasks such as speaker count)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import mlx.core as mx
import numpy as np

from ..errors import WeightsError
from .model import FRAME_RATE, WhisperHeads, pool_time

WINDOW_S = 30.0


def as_heads(heads: str | Path | WhisperHeads) -> WhisperHeads:
    """A loaded heads model from a folder or as given."""
    if isinstance(heads, WhisperHeads):
        return heads
    from .load import load_heads

    return load_heads(heads)


def check_encoder(heads: WhisperHeads, n_layers: int, n_state: int, where: str) -> None:
    """Refuse heads trained on another encoder size than (n_layers, n_state)."""
    a = heads.args
    if (a.n_layers, a.n_state) != (n_layers, n_state):
        enc = (getattr(heads, "config", None) or {}).get("encoder", {}).get("model", "?")
        raise WeightsError(
            f"{where}: heads trained on {enc} ({a.n_layers} layers x {a.n_state}), the model "
            f"has {n_layers} x {n_state}"
        )


def pooled_window(layers: list[mx.array], pool: int, n_valid: int) -> mx.array:
    """(L, ceil(n_valid / pool), C) float32 from one window's block outputs [(1, T, C)]."""
    stacked = mx.stack([x[0] for x in layers])  # (L, T, C)
    return pool_time(stacked.astype(mx.float32), pool, n_valid)


def _describe(spec, probs: np.ndarray) -> dict[str, Any]:
    p = {c: round(float(v), 4) for c, v in zip(spec.classes, probs)}
    if spec.multi_label:
        return {"labels": [c for c, v in p.items() if v >= 0.5], "probs": p}
    return {"label": spec.classes[int(np.argmax(probs))], "probs": p}


def head_outputs(heads: WhisperHeads, pooled: mx.array) -> dict[str, Any]:
    """Segment-level outputs of `pooled` (L, T, C) features: {task: {"label"|"labels",
    "probs": {class: p}}}; frame-level tasks add "frame_labels" (one class per head frame)."""
    out = {}
    pred = heads.predict(pooled[None])
    for spec in heads.args.tasks:
        o = pred[spec.name]
        d = _describe(spec, np.array(o["probs"][0]))
        if "frame_probs" in o:
            fp = np.array(o["frame_probs"][0])  # (T, K)
            d["frame_labels"] = [spec.classes[i] for i in fp.argmax(-1)]
        out[spec.name] = d
    return out


def segment_heads(
    heads: WhisperHeads, pooled: mx.array, time_offset: float, start: float, end: float
) -> dict[str, Any]:
    """Head outputs of the segment [start, end] (seconds) of a window that begins at
    `time_offset` and whose pooled features are `pooled` (L, T, C)."""
    fs = heads.args.frame_seconds
    n = pooled.shape[1]
    a = min(n - 1, max(0, int(math.floor((start - time_offset) / fs + 1e-6))))
    b = min(n, max(a + 1, int(math.ceil((end - time_offset) / fs - 1e-6))))
    return head_outputs(heads, pooled[:, a:b])


def predict_heads(
    audio: str | Path | np.ndarray,
    heads: str | Path | WhisperHeads,
    model: str | Path | None = None,
    dtype: str | None = None,
) -> dict[str, Any]:
    """The heads alone on `audio` (a file or 16 kHz float32 array): one encoder pass per
    30 s window. Returns {"frame_seconds", "windows": [{"start", "end", task: {...}}],
    "frames": {task: {"classes", "labels": [...], "probs": [[...]]}} (frame-level tasks)}.
    `model`: the Whisper weights the heads were trained on (default weights/<that name>)."""
    from ..audio import load_audio
    from ..models.whisper.audio import SAMPLE_RATE
    from ..models.whisper.load import load_cached
    from ..paths import weights_dir
    from .features import iter_windows

    h = as_heads(heads)
    enc_name = (getattr(h, "config", None) or {}).get("encoder", {}).get("model")
    mdir = Path(model) if model else weights_dir() / str(enc_name)
    if not mdir.exists():
        raise WeightsError(f"{mdir}: no Whisper weights for the heads' encoder; give --model")
    w = load_cached(str(mdir), dtype)
    check_encoder(h, w.dims.n_audio_layer, w.dims.n_audio_state, str(mdir))
    x = load_audio(audio) if not isinstance(audio, np.ndarray) else audio
    if x.size < 400:
        x = np.pad(x, (0, 400 - x.size))
    windows, frame_probs = [], {s.name: [] for s in h.args.tasks if s.frame_level}
    for start, pooled in iter_windows(w, x, h.args.pool):
        t0 = start / FRAME_RATE
        pred = h.predict(pooled[None])
        end = round(min(x.size / SAMPLE_RATE, t0 + WINDOW_S), 3)
        item: dict[str, Any] = {"start": round(t0, 3), "end": end}
        for spec in h.args.tasks:
            item[spec.name] = _describe(spec, np.array(pred[spec.name]["probs"][0]))
            if spec.name in frame_probs:
                frame_probs[spec.name].append(np.array(pred[spec.name]["frame_probs"][0]))
        windows.append(item)
    frames = {}
    for name, parts in frame_probs.items():
        spec, p = h.args.task(name), np.concatenate(parts)
        frames[name] = {"classes": spec.classes,
                        "labels": [spec.classes[i] for i in p.argmax(-1)],
                        "probs": np.round(p, 4).tolist()}  # fmt: skip
    return {"frame_seconds": h.args.frame_seconds, "windows": windows, "frames": frames}
