"""ECAPA-TDNN tier 2 and 3: live parity against SpeechBrain's own code on real speech.

The reference is SpeechBrain 1.1.2 (`requirements/ref-ecapa*.txt`, installed with --no-deps;
an inert torchaudio stand-in lets it import, see tools/make_ecapa_fixtures.py). A full-size
ECAPA_TDNN (spkrec-ecapa-voxceleb hyperparams, 20.8 M parameters) gets random weights and
non-trivial BatchNorm statistics, is saved in the real checkpoint folder layout, converted
with `mlx_audio_stack.convert.convert`, and compared on 20 real utterances of different lengths.

Tolerances: embeddings 1e-4 absolute and cosine > 0.99999; Fbank 1e-4 dB absolute for every
bin within 40 dB of the utterance's peak and 1e-4 relative everywhere (in the quietest bins
both float32 FFTs are ~1e-3 dB from a float64 computation, SpeechBrain's own included).
"""

from __future__ import annotations

import json
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest
from _helpers import load_tool
from conftest import require

from mlx_audio_stack.audio import load_audio
from mlx_audio_stack.convert import convert
from mlx_audio_stack.models.ecapa import load_model

N_UTTS = 20
EMB_ATOL = 1e-4
MIN_COS = 0.99999


@pytest.fixture(scope="module")
def ref(tmp_path_factory):
    """SpeechBrain reference modules + the converted MLX encoder of the same weights."""
    require("speechbrain", "sh tools/install_refs.sh (requirements/ref-ecapa*.txt)")
    require("torch", "sh tools/install_refs.sh")
    import torch

    torch.set_num_threads(2)
    tool = load_tool("make_ecapa_fixtures")
    r = tool.build_reference(tiny=False, seed=0)
    src = tool.save_folder(r, tmp_path_factory.mktemp("ecapa") / "spkrec-ecapa-voxceleb")
    out = convert(src, src.parent / "mlx")
    r.encoder = load_model(out)
    r.src, r.out, r.torch = src, out, torch
    return r


@pytest.fixture(scope="module")
def utts(shared_data):
    """20 real utterances (10 LibriSpeech test-other speakers) cut to 0.5 ... 5 s."""
    files = sorted((shared_data / "librispeech" / "test-other").rglob("*.flac"))
    by_spk: dict[str, list[Path]] = {}
    for f in files:
        by_spk.setdefault(f.name.split("-")[0], []).append(f)
    picks = [fs[i] for i in range(2) for fs in by_spk.values()][:N_UTTS]
    lengths = np.linspace(0.5, 5.0, N_UTTS)[np.random.default_rng(0).permutation(N_UTTS)]
    out = []
    for f, sec in zip(picks, lengths):
        w = load_audio(f)
        out.append(w[: int(sec * 16000)])
    assert len({w.size for w in out}) == N_UTTS
    return out


def _sb_embed(r, wavs: np.ndarray, rel: np.ndarray | None = None, normalize: bool = False):
    torch = r.torch
    with torch.no_grad():
        x = torch.from_numpy(np.atleast_2d(wavs))
        lens = torch.ones(x.shape[0]) if rel is None else torch.from_numpy(rel)
        emb = r.model(r.norm(r.fbank(x), lens), lens)  # EncoderClassifier.encode_batch
        if normalize:
            emb = r.emb_norm(emb, torch.ones(emb.shape[0]))
    return emb[:, 0].numpy()


@pytest.fixture(scope="module")
def sb_single(ref, utts):
    """SpeechBrain's embedding of each utterance alone (20, 192)."""
    return np.concatenate([_sb_embed(ref, w) for w in utts])


def _check(a: np.ndarray, b: np.ndarray, what: str) -> None:
    diff = np.abs(a - b).max()
    cos = np.sum(a * b, -1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)
    assert diff <= EMB_ATOL, f"{what}: max |diff| {diff:.3g} > {EMB_ATOL}"
    assert cos.min() > MIN_COS, f"{what}: min cosine {cos.min():.7f} <= {MIN_COS}"


def test_fbank_matches_speechbrain(ref, utts):
    for w in utts[:8]:
        t = ref.fbank(ref.torch.from_numpy(w)[None])[0].numpy()
        m = np.array(ref.encoder.fbank(mx.array(w)[None]))[0]
        assert m.shape == t.shape
        d = np.abs(m - t)
        loud = t > t.max() - 40.0
        assert d[loud].max() <= 1e-4, f"Fbank within 40 dB of peak: {d[loud].max():.3g}"
        assert (d / np.maximum(np.abs(t), 1.0)).max() <= 1e-4
        assert d.max() <= 5e-3


@pytest.mark.slow
def test_unbatched_embeddings_match(ref, utts, sb_single):
    for i, w in enumerate(utts):
        _check(ref.encoder.embed(w), sb_single[i : i + 1], f"utterance {i} ({w.size} samples)")


@pytest.mark.slow
def test_batched_speechbrain_semantics_match(ref, utts):
    """SpeechBrain's batched call (relative wav_lens) == our mode='speechbrain' batch."""
    n = np.array([w.size for w in utts])
    batch = np.zeros((len(utts), n.max()), np.float32)  # (B, T) zero padded
    for i, w in enumerate(utts):
        batch[i, : w.size] = w
    rel = (n / n.max()).astype(np.float32)
    sb = _sb_embed(ref, batch, rel)
    ours = np.array(ref.encoder.embed_batch(mx.array(batch), wav_lens=rel))
    _check(ours, sb, "batched with wav_lens")


def test_batched_exact_equals_unbatched_reference(ref, utts, sb_single):
    """Our default batching gives every utterance its unbatched SpeechBrain embedding."""
    _check(ref.encoder.embed(utts, batch_size=20), sb_single, "exact batch of 20")
    _check(ref.encoder.embed(utts, batch_size=6), sb_single, "exact batches of 6")


def test_silence_and_global_normalization(ref, utts):
    silence = np.zeros(16000, np.float32)
    _check(ref.encoder.embed(silence), _sb_embed(ref, silence), "1 s of silence")
    w = utts[0]
    _check(
        ref.encoder.embed(w, normalize=True),
        _sb_embed(ref, w, normalize=True),
        "mean_var_norm_emb",
    )


def test_8khz_file_end_to_end(ref, shared_data):
    """FSDD is 8 kHz: the file path is resampled to 16 kHz exactly like an array would be."""
    f = sorted((shared_data / "fsdd" / "recordings").glob("*.wav"))[0]
    w16 = load_audio(f, 16000)
    _check(ref.encoder.embed(str(f)), _sb_embed(ref, w16), f"{f.name} (8 kHz)")


def test_cli_embed_and_verify_on_real_files(ref, shared_data, tmp_path, capsys):
    from mlx_audio_stack.cli import main
    from mlx_audio_stack.models.ecapa.scoring import cosine_score

    files = sorted((shared_data / "librispeech" / "test-other").rglob("*.flac"))[:2]
    cohort = sorted((shared_data / "librispeech_untranscribed").rglob("*.flac"))[:4]
    npy = tmp_path / "e.npy"
    assert (
        main(
            [
                "embed",
                *map(str, files),
                "--model",
                str(ref.out),
                "--format",
                "npy",
                "--out",
                str(npy),
            ]
        )
        == 0
    )
    emb = np.load(npy)
    assert emb.shape == (2, 192)
    np.testing.assert_allclose(emb, ref.encoder.embed(files), atol=1e-6)
    capsys.readouterr()
    assert (
        main(["verify", str(files[0]), str(files[1]), "--model", str(ref.out), "--format", "json"])
        == 0
    )
    r = json.loads(capsys.readouterr().out)
    assert r["score"] == pytest.approx(float(cosine_score(emb[0], emb[1])), abs=1e-6)
    assert r["same_speaker"] == (r["score"] > 0.25) and not r["normalized"]
    assert (
        main(
            [
                "verify",
                str(files[0]),
                str(files[1]),
                "--model",
                str(ref.out),
                "--cohort",
                *map(str, cohort),
                "--format",
                "json",
            ]
        )
        == 0
    )
    r = json.loads(capsys.readouterr().out)
    assert r["normalized"] and r["threshold"] == 2.0 and np.isfinite(r["score"])
    assert main(["embed", str(shared_data / "no-such.wav"), "--model", str(ref.out)]) == 1
