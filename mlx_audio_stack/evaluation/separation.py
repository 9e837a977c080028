"""Separation evaluation: SI-SDR / SI-SDRi with permutation-invariant matching, and
reproducible 2-/3-speaker mixtures of real LibriSpeech speech (fixed seed, overlap ratio,
optional noise at a chosen SNR). Used by tools/make_mixtures.py and tools/eval_separation.py.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass
from itertools import permutations
from pathlib import Path

import numpy as np

from ..errors import MasError

EPS = 1e-8


def si_sdr(est: np.ndarray, ref: np.ndarray) -> float:
    """Scale-invariant SDR in dB of one estimate against one reference (both zero-meaned)."""
    est = np.asarray(est, np.float64) - np.mean(est)
    ref = np.asarray(ref, np.float64) - np.mean(ref)
    target = (est @ ref) / (ref @ ref + EPS) * ref
    noise = est - target
    return float(10 * np.log10((target @ target + EPS) / (noise @ noise + EPS)))


def si_sdr_pit(est: np.ndarray, refs: np.ndarray) -> tuple[np.ndarray, tuple[int, ...]]:
    """Per-source SI-SDR (S,) under the order of `est` that maximizes the mean; (S, T) each."""
    if est.shape != refs.shape:
        raise MasError(f"estimates {est.shape} and references {refs.shape} differ in shape")
    s = refs.shape[0]
    table = np.array([[si_sdr(est[j], refs[i]) for j in range(s)] for i in range(s)])
    best = max(permutations(range(s)), key=lambda p: sum(table[i, p[i]] for i in range(s)))
    return np.array([table[i, best[i]] for i in range(s)]), best


def si_sdr_improvement(est: np.ndarray, refs: np.ndarray, mix: np.ndarray) -> dict:
    """SI-SDR, the mixture's SI-SDR, and SI-SDRi (means over sources, PIT-matched)."""
    sdr, perm = si_sdr_pit(est, refs)
    base = np.array([si_sdr(mix, r) for r in refs])
    return {
        "si_sdr": float(sdr.mean()),
        "si_sdr_mix": float(base.mean()),
        "si_sdri": float((sdr - base).mean()),
        "perm": list(perm),
    }


@dataclass
class MixtureSpec:
    name: str
    speakers: list[str]
    utterances: list[str]
    offsets: list[int]  # sample offset of each source in the mixture
    gains_db: list[float]
    overlap: float
    snr_db: float | None
    sample_rate: int


def _librispeech_rows(data: Path) -> dict[str, list[dict]]:
    by_spk: dict[str, list[dict]] = {}
    with open(data / "MANIFEST.tsv", newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            if row["corpus"].lower().startswith("librispeech") and float(row["duration_s"]) >= 3.0:
                by_spk.setdefault(row["speaker"], []).append(row)
    return by_spk


def demand_noise(data: Path, sr: int) -> list[tuple[str, np.ndarray]]:
    """Real background noise: ("valentini/<stem>", VoiceBank-DEMAND noisy minus clean of the
    same utterance) for every pair in the shared data, in name order."""
    from ..audio import load_audio

    out = []
    for noisy in sorted((data / "valentini" / "noisy").glob("*.wav")):
        clean = data / "valentini" / "clean" / noisy.name
        if clean.exists():
            a, b = load_audio(noisy, sr), load_audio(clean, sr)
            n = min(a.size, b.size)
            out.append((f"valentini/{noisy.stem}", (a[:n] - b[:n]).astype(np.float32)))
    return out


def _noise_pool(data: Path, sr: int) -> list[np.ndarray]:
    return [x for _, x in demand_noise(data, sr)]


def make_mixtures(
    data: Path,
    out: Path,
    n: int,
    num_spks: int = 2,
    seconds: float = 4.0,
    overlap: float = 1.0,
    snr_db: float | None = None,
    sr: int = 16000,
    seed: int = 0,
) -> list[MixtureSpec]:
    """Write `n` mixtures to `out/<name>/{mix,s1,s2[,s3]}.wav` + `out/mixtures.json`.

    Each source is `seconds` long (cropped LibriSpeech utterance of a distinct speaker, gain
    uniform in [-2.5, 2.5] dB); source k starts at k * (1 - overlap) * seconds, so `overlap`
    is the overlapped fraction between neighbours (1: full overlap, 0: one after another).
    With `snr_db`, real DEMAND noise (VoiceBank-DEMAND noisy - clean) is added at that SNR.
    """
    import soundfile as sf

    from ..audio import load_audio

    if not 0.0 <= overlap <= 1.0:
        raise MasError(f"overlap: expected a ratio in [0, 1], got {overlap}")
    rng = np.random.default_rng(seed)
    by_spk = _librispeech_rows(data)
    speakers = sorted(by_spk)
    if len(speakers) < num_spks:
        raise MasError(f"{data}: {len(speakers)} LibriSpeech speakers, need {num_spks}")
    noise = _noise_pool(data, sr) if snr_db is not None else []
    if snr_db is not None and not noise:
        raise MasError(f"{data}: no valentini noisy/clean pairs for noise at {snr_db} dB")
    length = int(seconds * sr)
    hop = int(round((1.0 - overlap) * length))
    total = length + (num_spks - 1) * hop
    out.mkdir(parents=True, exist_ok=True)
    specs = []
    for i in range(n):
        spk = list(rng.choice(speakers, size=num_spks, replace=False))
        rows = [by_spk[s][int(rng.integers(len(by_spk[s])))] for s in spk]
        srcs = np.zeros((num_spks, total), np.float32)
        gains = [float(rng.uniform(-2.5, 2.5)) for _ in range(num_spks)]
        for k, row in enumerate(rows):
            x = load_audio(data / row["relpath"], sr)
            start = int(rng.integers(0, max(1, x.size - length)))
            seg = x[start : start + length]
            seg = seg / (np.sqrt(np.mean(seg**2)) + EPS) * 0.05 * 10 ** (gains[k] / 20)
            srcs[k, k * hop : k * hop + seg.size] = seg
        mix = srcs.sum(0)
        if snr_db is not None:
            nz = noise[int(rng.integers(len(noise)))]
            nz = np.resize(nz, total)  # tile a short noise clip
            p_s, p_n = np.mean(mix**2), np.mean(nz**2) + EPS
            mix = mix + nz * np.sqrt(p_s / (p_n * 10 ** (snr_db / 10)))
        name = f"mix{i:04d}"
        d = out / name
        d.mkdir(exist_ok=True)
        sf.write(str(d / "mix.wav"), mix.astype(np.float32), sr, subtype="FLOAT")
        for k in range(num_spks):
            sf.write(str(d / f"s{k + 1}.wav"), srcs[k], sr, subtype="FLOAT")
        specs.append(
            MixtureSpec(
                name,
                spk,
                [r["utterance_id"] for r in rows],
                [k * hop for k in range(num_spks)],
                gains,
                overlap,
                snr_db,
                sr,
            )
        )
    meta = {
        "seed": seed,
        "num_spks": num_spks,
        "seconds": seconds,
        "overlap": overlap,
        "snr_db": snr_db,
        "sample_rate": sr,
        "mixtures": [asdict(s) for s in specs],
    }
    (out / "mixtures.json").write_text(json.dumps(meta, indent=1) + "\n")
    return specs


def load_mixture(folder: Path) -> tuple[np.ndarray, np.ndarray, int]:
    """(mix (T,), sources (S, T), sample rate) of one folder written by make_mixtures."""
    import soundfile as sf

    mix, sr = sf.read(str(folder / "mix.wav"), dtype="float32")
    refs = [sf.read(str(p), dtype="float32")[0] for p in sorted(folder.glob("s[0-9]*.wav"))]
    return mix, np.stack(refs), sr
