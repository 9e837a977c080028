"""Whisper converter: OpenAI `.pt`, Hugging Face folders (pytorch_model.bin / model.safetensors,
sharded), CTranslate2 / faster-whisper folders (model.bin or model.bin.part1+part2...).

Everything is mapped onto openai-whisper's state-dict names, then `Whisper.sanitize`
applies this port's few deviations. Tokenizer files shipped with the weights are copied along.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConversionError
from ..weights_io import check_weights, inside, load_safetensors, param_shapes
from . import Converted, Converter, register
from ._ctranslate2 import model_bin_parts, read_model_bin, read_spec_name
from .torch_pickle import MAX_PICKLE_BYTES, load_torch_checkpoint, pickle_head

TOKENIZER_FILES = (
    "tokenizer.json",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
    "special_tokens_map.json",
    "tokenizer_config.json",
)


# ---------------------------------------------------------------- detection
def _is_openai_pt(p: Path) -> bool:
    head = pickle_head(p, MAX_PICKLE_BYTES)
    return b"model_state_dict" in head and b"n_audio_state" in head


def _hf_config(p: Path) -> dict | None:
    cfg = p / "config.json"
    if p.is_dir() and cfg.exists():
        try:
            d = json.loads(cfg.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None
        if d.get("model_type") == "whisper":
            return d
    return None


def _is_ct2(p: Path) -> bool:
    return p.is_dir() and read_spec_name(p) == "WhisperSpec"


def detect(p: Path) -> bool:
    return _is_openai_pt(p) or _hf_config(p) is not None or _is_ct2(p)


def _json_object(p: Path) -> dict:
    try:
        d = json.loads(_local(p, p.parent).read_text())
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ConversionError(f"{p}: invalid JSON ({exc})") from None
    if not isinstance(d, dict):
        raise ConversionError(f"{p}: expected a JSON object, got {type(d).__name__}")
    return d


# ---------------------------------------------------------------- openai .pt
def _from_openai(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    ckpt = load_torch_checkpoint(path)
    if not isinstance(ckpt, dict) or "dims" not in ckpt or "model_state_dict" not in ckpt:
        raise ConversionError(
            f"{path}: not an OpenAI Whisper checkpoint (no dims / model_state_dict)"
        )
    return dict(ckpt["dims"]), dict(ckpt["model_state_dict"])


# ---------------------------------------------------------------- Hugging Face
HF_RENAMES = [
    (r"^model\.encoder\.embed_positions\.weight$", "encoder.positional_embedding"),
    (r"^model\.decoder\.embed_positions\.weight$", "decoder.positional_embedding"),
    (r"^model\.decoder\.embed_tokens\.weight$", "decoder.token_embedding.weight"),
    (r"^model\.encoder\.layer_norm\.", "encoder.ln_post."),
    (r"^model\.decoder\.layer_norm\.", "decoder.ln."),
    (r"^model\.(encoder|decoder)\.conv", r"\1.conv"),
    (r"^model\.(encoder|decoder)\.layers\.(\d+)\.", r"\1.blocks.\2."),
    (r"\.self_attn_layer_norm\.", ".attn_ln."),
    (r"\.encoder_attn_layer_norm\.", ".cross_attn_ln."),
    (r"\.final_layer_norm\.", ".mlp_ln."),
    (r"\.self_attn\.", ".attn."),
    (r"\.encoder_attn\.", ".cross_attn."),
    (r"\.q_proj\.", ".query."),
    (r"\.k_proj\.", ".key."),
    (r"\.v_proj\.", ".value."),
    (r"\.out_proj\.", ".out."),
    (r"\.fc1\.", ".mlp.0."),
    (r"\.fc2\.", ".mlp.2."),
]


def _load_hf_weights(folder: Path) -> tuple[dict[str, Any], list[Path]]:
    import mlx.core as mx

    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index = folder / index_name
        if index.exists():
            try:
                wmap = json.loads(_local(index, folder).read_text())["weight_map"]
                files = sorted(set(wmap.values()))
                if not all(isinstance(f, str) and f for f in files):
                    raise TypeError("shard names must be strings")
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
                raise ConversionError(f"{index}: malformed index ({exc})") from None
            break
    else:
        files = (
            ["model.safetensors"]
            if (folder / "model.safetensors").exists()
            else (["pytorch_model.bin"] if (folder / "pytorch_model.bin").exists() else [])
        )
    if not files:
        raise ConversionError(
            f"{folder}: Hugging Face Whisper folder without model.safetensors or pytorch_model.bin"
        )
    weights: dict[str, Any] = {}
    paths = [inside(folder / f, folder, "a weights file", ConversionError) for f in files]
    for p in paths:
        if not p.exists():
            raise ConversionError(f"{folder}: shard {p.name} listed in the index is missing")
        if p.suffix == ".safetensors":
            weights.update(
                {
                    k: v.astype(mx.float32) if mx.issubdtype(v.dtype, mx.floating) else v
                    for k, v in load_safetensors(p, ConversionError).items()
                }
            )
        else:
            weights.update(load_torch_checkpoint(p))
    return weights, paths


HF_DIM_KEYS = (
    "num_mel_bins",
    "max_source_positions",
    "d_model",
    "encoder_attention_heads",
    "encoder_layers",
    "vocab_size",
    "max_target_positions",
    "decoder_attention_heads",
    "decoder_layers",
)


def _from_hf(folder: Path, cfg: dict) -> tuple[dict, dict[str, Any], list[Path]]:
    raw, paths = _load_hf_weights(folder)
    sd = {}
    for k, v in raw.items():
        if k == "proj_out.weight":
            continue  # tied to the token embedding
        for pat, rep in HF_RENAMES:
            k = re.sub(pat, rep, k)
        sd[k] = v
    missing = [k for k in HF_DIM_KEYS if k not in cfg]
    if missing:
        raise ConversionError(f"{folder / 'config.json'}: missing {missing}")
    dims = {
        "n_mels": cfg["num_mel_bins"],
        "n_audio_ctx": cfg["max_source_positions"],
        "n_audio_state": cfg["d_model"],
        "n_audio_head": cfg["encoder_attention_heads"],
        "n_audio_layer": cfg["encoder_layers"],
        "n_vocab": cfg["vocab_size"],
        "n_text_ctx": cfg["max_target_positions"],
        "n_text_state": cfg["d_model"],
        "n_text_head": cfg["decoder_attention_heads"],
        "n_text_layer": cfg["decoder_layers"],
    }
    return dims, sd, paths


# ---------------------------------------------------------------- CTranslate2
def _split(w: np.ndarray, n: int) -> list[np.ndarray]:
    return np.split(w, n, axis=0)


def _from_ct2(folder: Path) -> tuple[dict, dict[str, np.ndarray]]:
    _, v = read_model_bin(folder)
    sd: dict[str, np.ndarray] = {}

    def ln(src: str, dst: str):
        sd[f"{dst}.weight"], sd[f"{dst}.bias"] = v[f"{src}/gamma"], v[f"{src}/beta"]

    def lin(src: str, dst: str, bias: bool = True):
        sd[f"{dst}.weight"] = v[f"{src}/weight"]
        if bias:
            sd[f"{dst}.bias"] = v[f"{src}/bias"]

    def fused(src: str, dsts: list[str]):
        # fused projections; Whisper's key has no bias (CTranslate2 stores zeros there)
        ws = _split(v[f"{src}/weight"], len(dsts))
        bs = _split(v[f"{src}/bias"], len(dsts))
        for d, w, b in zip(dsts, ws, bs):
            sd[f"{d}.weight"] = w
            if not d.endswith(".key"):
                sd[f"{d}.bias"] = b

    n_enc = 1 + max(int(m.group(1)) for k in v if (m := re.match(r"encoder/layer_(\d+)/", k)))
    n_dec = 1 + max(int(m.group(1)) for k in v if (m := re.match(r"decoder/layer_(\d+)/", k)))
    for conv in ("conv1", "conv2"):
        lin(f"encoder/{conv}", f"encoder.{conv}")

    def self_attention_and_mlp(s: str, d: str) -> None:  # what every block of both sides has
        ln(f"{s}/self_attention/layer_norm", f"{d}.attn_ln")
        fused(
            f"{s}/self_attention/linear_0", [f"{d}.attn.query", f"{d}.attn.key", f"{d}.attn.value"]
        )
        lin(f"{s}/self_attention/linear_1", f"{d}.attn.out")
        ln(f"{s}/ffn/layer_norm", f"{d}.mlp_ln")
        lin(f"{s}/ffn/linear_0", f"{d}.mlp.0")
        lin(f"{s}/ffn/linear_1", f"{d}.mlp.2")

    for i in range(n_enc):
        self_attention_and_mlp(f"encoder/layer_{i}", f"encoder.blocks.{i}")
    ln("encoder/layer_norm", "encoder.ln_post")
    sd["decoder.token_embedding.weight"] = v["decoder/embeddings/weight"]
    sd["decoder.positional_embedding"] = v["decoder/position_encodings/encodings"]
    for i in range(n_dec):
        s, d = f"decoder/layer_{i}", f"decoder.blocks.{i}"
        self_attention_and_mlp(s, d)
        ln(f"{s}/attention/layer_norm", f"{d}.cross_attn_ln")
        lin(f"{s}/attention/linear_0", f"{d}.cross_attn.query")
        fused(f"{s}/attention/linear_1", [f"{d}.cross_attn.key", f"{d}.cross_attn.value"])
        lin(f"{s}/attention/linear_2", f"{d}.cross_attn.out")
    ln("decoder/layer_norm", "decoder.ln")
    emb = v["decoder/embeddings/weight"]
    conv1 = v["encoder/conv1/weight"]
    dims = {
        "n_mels": conv1.shape[1],
        "n_audio_ctx": v["encoder/position_encodings/encodings"].shape[0],
        "n_audio_state": conv1.shape[0],
        "n_audio_head": int(v["encoder/num_heads"]),
        "n_audio_layer": n_enc,
        "n_vocab": emb.shape[0],
        "n_text_ctx": sd["decoder.positional_embedding"].shape[0],
        "n_text_state": emb.shape[1],
        "n_text_head": int(v["decoder/num_heads"]),
        "n_text_layer": n_dec,
    }
    return dims, sd


# ---------------------------------------------------------------- tokenizer + heads
def _openai_tiktoken(n_vocab: int) -> Path | None:
    spec = importlib.util.find_spec("whisper")  # the installed openai-whisper, not imported
    if spec is None or not spec.submodule_search_locations:
        return None
    name = "multilingual" if n_vocab >= 51865 else "gpt2"
    p = Path(next(iter(spec.submodule_search_locations))) / "assets" / f"{name}.tiktoken"
    return p if p.exists() else None


def _local(p: Path, folder: Path) -> Path:
    """A file of the source folder that is copied into the output: a symlink leaving the
    folder is refused (its target's content would be copied), so is a non-regular file."""
    r = inside(p, folder, "a symlink", ConversionError)
    if not r.is_file():
        raise ConversionError(f"{p}: not a regular file")
    return r


def _tokenizer_files(
    folder: Path | None, tokenizer: str | None, n_vocab: int, src: Path
) -> dict[str, Path]:
    if tokenizer:
        t = Path(tokenizer)
        if t.is_dir():
            folder = t
        elif t.exists():
            return {t.name: t}
        else:
            raise ConversionError(f"--tokenizer {tokenizer}: no such file or folder")
    if folder is not None and (folder / "tokenizer.json").exists():
        return {"tokenizer.json": _local(folder / "tokenizer.json", folder)}
    if folder is not None and (folder / "vocab.json").exists():
        return {n: _local(folder / n, folder) for n in TOKENIZER_FILES if (folder / n).exists()}
    tk = _openai_tiktoken(n_vocab)
    if tk is not None:
        return {tk.name: tk}
    raise ConversionError(
        f"{src}: no tokenizer files found beside the weights (tokenizer.json, vocab.json + "
        f"merges.txt, or openai-whisper's *.tiktoken); pass tokenizer=<file or folder>"
    )


def convert(src: Path, tokenizer: str | None = None, **_: Any) -> Converted:
    from ..models.whisper.load import check_alignment_heads, check_dims_against
    from ..models.whisper.model import ModelDimensions, Whisper

    alignment_heads: list = []
    cfg: dict | None = None
    folder: Path | None = src if src.is_dir() else src.parent
    if src.is_dir():  # files to be copied must not lead out of the folder: checked up front
        for n in TOKENIZER_FILES:
            if (src / n).exists() or (src / n).is_symlink():
                _local(src / n, src)
    if src.is_file():  # the reader names what is wrong with a file that is not one
        dims, sd = _from_openai(src)
        sources = [src]
        folder = None if tokenizer is None else folder
    elif cfg := _hf_config(src):
        _local(src / "config.json", src)
        dims, sd, sources = _from_hf(src, cfg)
        gen = src / "generation_config.json"
        if gen.exists():
            alignment_heads = _json_object(gen).get("alignment_heads") or []
    elif _is_ct2(src) or (src.is_dir() and model_bin_parts(src)):
        try:
            dims, sd = _from_ct2(src)
        except (KeyError, IndexError, ValueError, AttributeError, TypeError) as exc:
            raise ConversionError(
                f"{src}/model.bin: not a complete Whisper model ({type(exc).__name__}: {exc})"
            ) from None
        sources = model_bin_parts(src)
        ct2cfg = _json_object(src / "config.json") if (src / "config.json").exists() else {}
        alignment_heads = ct2cfg.get("alignment_heads") or []
    else:
        raise ConversionError(
            f"{src}: not a Whisper checkpoint (OpenAI .pt, Hugging Face "
            f"folder, or CTranslate2 folder)"
        )
    where = f"{src / 'config.json' if src.is_dir() and cfg else src}: whisper dims"
    if not isinstance(dims, dict):
        raise ConversionError(f"{where}: expected a mapping, got {type(dims).__name__}")
    dims = ModelDimensions.from_dict(dims, where, ConversionError)
    heads = check_alignment_heads(alignment_heads, dims, f"{src}: config", ConversionError)
    if not isinstance(sd, dict) or not all(isinstance(k, str) for k in sd):
        raise ConversionError(f"{src}: the state dict is not a mapping of names to tensors")
    model = Whisper(dims)  # lazy: its parameters only record shapes
    weights = model.sanitize(sd)
    check_dims_against(dims, weights, str(src), ConversionError)
    check_weights(param_shapes(model), weights, str(src))
    extra = _tokenizer_files(folder, tokenizer, dims.n_vocab, src)
    tok_name = next(iter(extra)) if len(extra) == 1 else "vocab.json"
    config = {
        "model_type": "whisper",
        "args": dims.to_dict(),
        "alignment_heads": [list(h) for h in heads],
        "tokenizer": tok_name,
    }
    return Converted(weights, config, extra, sources)


def quantize(result: Converted, bits: int, group_size: int) -> Converted:
    from mlx.utils import tree_flatten

    from ..models.whisper.load import build_model, quantize_model
    from ..weights_io import load_strict

    model = build_model(result.config)
    load_strict(model, result.weights, "whisper (before quantization)")
    quantize_model(model, bits, group_size)
    result.weights = dict(tree_flatten(model.parameters()))
    result.config["quantization"] = {"bits": bits, "group_size": group_size}
    return result


register(
    Converter(
        model_type="whisper",
        description="OpenAI Whisper: .pt, Hugging Face folder, CTranslate2/faster-whisper folder",
        detect=detect,
        convert=convert,
        hub_patterns=("*.json", "*.safetensors", "*.txt", "model.bin*", "pytorch_model*.bin"),
        quantize=quantize,
    )
)
