"""Whisper tier 1 (smoke): random configs built and converted in every layout the converter
reads, with logit parity against the reference built from the same random weights (openai-whisper,
transformers; cheap, so always live), dtypes and quantization, official sizes, block-wise top-k.

Tier 2 (real weights against openai-whisper) is test_whisper_parity.py; tier 3 (end to end on
real speech) is test_whisper_e2e.py.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest
from conftest import require

from mlx_audio_stack.convert import convert
from mlx_audio_stack.models.whisper import OFFICIAL_DIMS, ModelDimensions, Whisper, load_model
from mlx_audio_stack.models.whisper.transcribe import get_tokenizer


def test_official_sizes_build_with_expected_parameter_counts():
    from mlx.utils import tree_flatten

    # published sizes (openai-whisper README): tiny 39M, base 74M, small 244M, medium 769M,
    # large 1550M, turbo 809M; arrays are lazy, so nothing is allocated here
    expected = {
        "tiny": 39,
        "base": 74,
        "small": 244,
        "medium": 769,
        "large-v3": 1550,
        "large-v3-turbo": 809,
    }
    for name, millions in expected.items():
        m = Whisper(OFFICIAL_DIMS[name])
        n = sum(v.size for _, v in tree_flatten(m.parameters())) / 1e6
        assert abs(n - millions) / millions < 0.06, (name, n)  # published figures are rounded
    assert Whisper(OFFICIAL_DIMS["large-v3"]).num_languages == 100
    assert Whisper(OFFICIAL_DIMS["tiny.en"]).is_multilingual is False


def _random_openai_checkpoint(whisper, path: Path, n_mels=80, n_vocab=51865, seed=0):
    import torch

    torch.manual_seed(seed)
    dims = whisper.model.ModelDimensions(
        n_mels=n_mels,
        n_audio_ctx=1500,
        n_audio_state=64,
        n_audio_head=4,
        n_audio_layer=2,
        n_vocab=n_vocab,
        n_text_ctx=448,
        n_text_state=64,
        n_text_head=4,
        n_text_layer=2,
    )
    model = whisper.model.Whisper(dims)
    with torch.no_grad():
        # openai-whisper leaves this parameter as torch.empty (a checkpoint fills it):
        # uninitialised memory, NaN at times
        model.decoder.positional_embedding.normal_(0, 0.02)
        # non-trivial LayerNorm affine parameters
        for name, p in model.named_parameters():
            if name.endswith("ln.weight") or "_ln." in name:
                p.add_(0.1 * torch.randn_like(p))
    sd = {k: v for k, v in model.state_dict().items() if k != "alignment_heads"}
    torch.save({"dims": asdict(dims), "model_state_dict": sd}, path)
    return model.eval()


@pytest.mark.parametrize("n_mels,n_vocab", [(80, 51864), (80, 51865), (128, 51866)])
def test_random_openai_pt_converts_with_logit_parity(torch_whisper, tmp_path, n_mels, n_vocab):
    import torch

    ref = _random_openai_checkpoint(torch_whisper, tmp_path / "m.pt", n_mels, n_vocab)
    out = convert(tmp_path / "m.pt", tmp_path / "mlx")
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model_type"] == "whisper" and cfg["args"]["n_mels"] == n_mels
    assert len(cfg["source_sha256"]["m.pt"]) == 64 and cfg["dtype"] == "float32"
    model = load_model(out, "float32")
    mel = np.random.default_rng(0).standard_normal((2, 3000, n_mels)).astype(np.float32)
    tokens = np.array([[50257, 50363, 400, 1000], [50257, 50363, 13, 7]])
    with torch.no_grad():
        want = ref(torch.from_numpy(mel.transpose(0, 2, 1)), torch.from_numpy(tokens)).numpy()
    got = np.array(model(mx.array(mel), mx.array(tokens)))
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    tk = get_tokenizer(model)
    assert tk.num_languages == (100 if n_vocab == 51866 else 99)


@pytest.mark.parametrize("layout", ["safetensors", "sharded", "pytorch_model.bin"])
def test_hugging_face_folder_converts_with_logit_parity(torch_whisper, tmp_path, layout):
    require("transformers", "tools/install_refs.sh installs transformers")
    import torch
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    cfg = WhisperConfig(
        vocab_size=51865,
        num_mel_bins=80,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        d_model=64,
        encoder_ffn_dim=256,
        decoder_ffn_dim=256,
        max_source_positions=1500,
        max_target_positions=448,
    )
    torch.manual_seed(0)
    ref = WhisperForConditionalGeneration(cfg).eval()
    kw = {"safe_serialization": layout != "pytorch_model.bin"}
    if layout == "sharded":
        kw["max_shard_size"] = "2MB"
    ref.save_pretrained(tmp_path / "hf", **kw)
    if layout == "sharded":
        assert (tmp_path / "hf" / "model.safetensors.index.json").exists()
    model = load_model(convert(tmp_path / "hf", tmp_path / "mlx"), "float32")
    mel = np.random.default_rng(0).standard_normal((1, 3000, 80)).astype(np.float32)
    tokens = np.array([[50258, 50259, 50359, 400, 1000]])
    with torch.no_grad():
        want = ref(
            input_features=torch.from_numpy(mel.transpose(0, 2, 1).copy()),
            decoder_input_ids=torch.from_numpy(tokens),
        ).logits.numpy()
    got = np.array(model(mx.array(mel), mx.array(tokens)))
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


def test_hub_repo_id_offline_gives_a_clear_error(tmp_path, monkeypatch):
    from mlx_audio_stack.errors import ConversionError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConversionError, match="hub could not provide it"):
        convert("openai/whisper-tiny", tmp_path / "out", model="whisper")
    assert not (tmp_path / "out").exists()


def test_dtypes_and_quantization_load_and_stay_close(torch_whisper, tmp_path):
    _random_openai_checkpoint(torch_whisper, tmp_path / "m.pt")
    base = load_model(convert(tmp_path / "m.pt", tmp_path / "f32"), "float32")
    mel = mx.array(np.random.default_rng(1).standard_normal((1, 3000, 80)).astype(np.float32))
    tokens = mx.array([[50258, 50259, 50359, 400]])
    want = np.array(base(mel, tokens)).ravel()
    for name, kw, min_cos in [
        ("f16", {"dtype": "float16"}, 0.999),
        ("bf16", {"dtype": "bfloat16"}, 0.99),
        ("q8", {"quantize": 8}, 0.99),
        ("q4", {"quantize": 4}, 0.9),
    ]:
        out = convert(tmp_path / "m.pt", tmp_path / name, **kw)
        cfg = json.loads((out / "config.json").read_text())
        assert ("quantization" in cfg) == ("quantize" in kw)
        got = np.array(load_model(out, "float32")(mel, tokens)).ravel()
        cos = got @ want / np.linalg.norm(got) / np.linalg.norm(want)
        assert cos > min_cos, (name, cos)


def test_model_dimensions_roundtrip():
    d = OFFICIAL_DIMS["base"]
    assert ModelDimensions.from_dict(d.to_dict()) == d


@pytest.mark.parametrize("V", [51864, 51865, 300, 7])
def test_top_k_selects_what_argpartition_selects(V):
    """Beam search's block-wise top-k: the same values as a full partition, also on rows
    where the timestamp rules left long runs of -inf, ties, and a tail that fills no block."""
    from mlx_audio_stack.models.whisper.decoding import top_k

    rng = np.random.default_rng(V)
    k = 6 if V > 6 else 3
    for trial in range(60):
        x = rng.standard_normal((5, V)).astype(np.float32)
        if trial % 2:
            x[:, rng.integers(0, V, V // 2)] = -np.inf
        if trial % 3 == 0:
            x[:, V // 3 :] = -np.inf
        if trial % 5 == 0:
            x[:, -1] = 10.0  # the best value in the tail
        if trial % 7 == 0:
            x = np.round(x)  # many ties
        got = top_k(x, k)
        assert got.shape == (5, k) and all(len(set(r)) == k for r in got.tolist())
        want = np.sort(np.partition(x, -k, axis=1)[:, -k:], axis=1)
        np.testing.assert_array_equal(np.sort(np.take_along_axis(x, got, axis=1), axis=1), want)
