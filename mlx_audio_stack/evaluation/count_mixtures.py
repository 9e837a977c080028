"""Mixtures of real speech with frame-level speaker counts, for training and evaluation.

Reproducible from a seed (every clip draws from `default_rng([seed, split, index])`).
A clip is CLIP_SECONDS long; K in {0, 1, 2, 3} speakers (distinct LibriSpeech speakers of
the clip's split) each contribute one segment of one utterance at a random offset, so the
count varies inside the clip. Per source: level normalised on its speech, then a random
gain (+-5 dB: at most 10 dB between two talkers), synthetic reverberation (70 % of clips)
(exponential-decay RIR, RT60 0.2-0.9 s, direct-to-reverberant ratio -2..+10 dB). Additive
noise at 0-20 dB SNR: VoiceBank-DEMAND noise (noisy minus clean, babble-free files only;
the first 60 % of a file for training, the rest held out), synthetic noise (random smooth
spectrum, some amplitude-modulated, some with mains hum) or, for held-out clips only, AMI
silences (babble-free ones).
Overall level -50..-18 dBFS (far-field meeting audio is quiet).

Labels: each clean source's speech activity comes from Silero VAD (prob >= 0.5 per 32 ms,
gaps < 0.2 s filled, runs < 0.1 s dropped); a 0.1 s frame counts a source when the source is
active for at least half of it.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SR = 16000
FRAME = 1600  # samples per 0.1 s label frame
ACT_HOP = 160  # activity grid: 10 ms
CLIP_SECONDS = 6.0
COUNT_PROBS = (0.1, 0.25, 0.35, 0.3)  # target K = 0, 1, 2, 3 talkers
# speakers never used for training: LibriSpeech test-other / test-clean / dev-clean
VALID_SPEAKERS = ("1688", "1998", "2033", "2414", "2609")
TEST_SPEAKERS = ("3005", "3080", "3331", "367", "533", "1089", "2412")
NOISE_MAX_SPEECH = 0.5  # noise recordings with more "speech" than this are babble: unused
NOISE_FILES = ("p287_001", "p287_002", "p287_003", "p287_004", "p287_005", "p287_006")
VAD_THRESHOLD = 0.5
MIN_GAP_S, MIN_RUN_S = 0.2, 0.1


@dataclass
class Utterance:
    uid: str
    speaker: str
    audio: np.ndarray  # float32, RMS over its active samples = 1
    active: np.ndarray  # bool per 10 ms
    relpath: str


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    d = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1)))


def activity_from_probs(probs: np.ndarray, chunk: int, n_samples: int) -> np.ndarray:
    """Silero chunk probabilities -> bool activity per 10 ms (gaps filled, blips dropped)."""
    per = np.repeat(probs >= VAD_THRESHOLD, chunk)[:n_samples]
    act = per[: n_samples // ACT_HOP * ACT_HOP].reshape(-1, ACT_HOP).mean(1) >= 0.5
    gap, run = int(MIN_GAP_S * SR / ACT_HOP), int(MIN_RUN_S * SR / ACT_HOP)
    for a, b in _runs(~act):
        if b - a < gap and a > 0 and b < act.size:
            act[a:b] = True
    for a, b in _runs(act):
        if b - a < run:
            act[a:b] = False
    return act


def split_of(speaker: str) -> str:
    return "valid" if speaker in VALID_SPEAKERS else "test" if speaker in TEST_SPEAKERS else "train"


def load_utterances(data: Path, vad, progress: bool = True) -> dict[str, list[Utterance]]:
    """split -> utterances: librispeech_untranscribed for train (held-out speakers removed),
    LibriSpeech test-other / test-clean / dev-clean for valid and test."""
    from tqdm import tqdm

    from ..audio import load_audio
    from ..models.silero_vad import speech_probs

    rows = list(csv.DictReader(open(data / "MANIFEST.tsv", encoding="utf-8"), delimiter="\t"))
    rows = [r for r in rows if r["corpus"].startswith("LibriSpeech")]
    rows.sort(key=lambda r: r["relpath"])
    out: dict[str, list[Utterance]] = {"train": [], "valid": [], "test": []}
    for r in tqdm(rows, desc="speaker_count: sources + VAD", disable=not progress):
        spk = r["speaker"]
        split = split_of(spk)
        if split == "train" and not r["relpath"].startswith("librispeech_untranscribed/"):
            continue
        x = load_audio(data / r["relpath"])
        act = activity_from_probs(speech_probs(vad, x), 512, x.size)
        if act.sum() < 50:  # under 0.5 s of speech: useless as a source
            continue
        samp = np.repeat(act, ACT_HOP)
        rms = float(np.sqrt(np.mean(x[: samp.size][samp] ** 2)))
        uid = Path(r["relpath"]).stem
        out[split].append(
            Utterance(uid, spk, (x / max(rms, 1e-6)).astype(np.float32), act, r["relpath"])
        )
    return out


def speech_fraction(vad, x: np.ndarray) -> float:
    """Share of 32 ms chunks Silero VAD calls speech (input peak-normalised to 0.5)."""
    from ..models.silero_vad import speech_probs

    return float(np.mean(speech_probs(vad, 0.5 * x / max(1e-9, np.abs(x).max())) >= 0.5))


def load_noises(
    data: Path, split: str, vad, ami_rttm: Callable | None = None
) -> list[tuple[str, np.ndarray]]:
    """(name, noise) list: DEMAND noise (noisy minus clean) of the VoiceBank pairs, the
    first 60 % of each file for training and the rest for valid / test; held-out splits
    add AMI silences (regions no RTTM speaker covers, >= 0.5 s) when `ami_rttm` gives them.
    A noise that Silero VAD calls speech in >= NOISE_MAX_SPEECH of its chunks is babble
    (other people talking), which a 0-speaker label would contradict: it is left out
    (measured: p287_001-004 at 97-99 %, p287_005 55 %, p287_006 18 %)."""
    from ..audio import load_audio

    out = []
    for n in NOISE_FILES:
        noisy = load_audio(data / "valentini/noisy" / f"{n}.wav")
        clean = load_audio(data / "valentini/clean" / f"{n}.wav")
        m = min(noisy.size, clean.size)
        if speech_fraction(vad, noisy[:m] - clean[:m]) >= NOISE_MAX_SPEECH:
            continue
        cut = int(0.6 * m)
        part = slice(0, cut) if split == "train" else slice(cut, m)
        out.append((f"demand:{n}", (noisy[:m] - clean[:m])[part].astype(np.float32)))
    if split != "train" and ami_rttm is not None:
        for name, sil in ami_rttm():
            if speech_fraction(vad, sil) < NOISE_MAX_SPEECH:
                out.append((f"ami-silence:{name}", sil))
    return out


def synthetic_noise(rng: np.random.Generator, n: int) -> tuple[str, np.ndarray]:
    """Stationary noise of a random smooth spectrum (1/f^a tilt + a random-walk envelope of
    +-10 dB), sometimes amplitude-modulated (0.2-4 Hz) and with mains hum."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.maximum(np.fft.rfftfreq(n, 1 / SR), 20.0)
    alpha = float(rng.uniform(0, 2))
    knots = np.cumsum(rng.normal(0, 3.0, 24))  # dB, over log-spaced frequencies
    env_db = np.interp(np.log(f), np.linspace(np.log(20), np.log(SR / 2), 24), knots)
    spec = spec / f ** (alpha / 2) * 10 ** (np.clip(env_db - env_db.mean(), -10, 10) / 20)
    spec[f < 40.0] = 0.0  # no DC / sub-audio drift
    x = np.fft.irfft(spec, n)
    name = f"synthetic:{alpha:.2f}"
    if rng.random() < 0.3:
        rate, depth = rng.uniform(0.2, 4.0), rng.uniform(0.2, 0.8)
        x = x * (1 + depth * np.sin(2 * np.pi * rate * np.arange(n) / SR + rng.uniform(0, 6.3)))
        name += "+am"
    if rng.random() < 0.2:
        base = 50.0 if rng.random() < 0.5 else 60.0
        t = np.arange(n) / SR
        hum = sum(rng.uniform(0, 1) / k * np.sin(2 * np.pi * base * k * t) for k in range(1, 6))
        x = x + hum * _rms(x) * rng.uniform(0.3, 2.0)
        name += "+hum"
    return name, x.astype(np.float32)


def synthetic_rir(rng: np.random.Generator) -> np.ndarray:
    """Direct path + exponentially decaying diffuse tail (RT60 0.2-0.9 s, DRR -2..+10 dB)."""
    rt60 = rng.uniform(0.2, 0.9)
    n = int(min(rt60, 0.6) * SR)
    t = np.arange(n) / SR
    tail = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)
    tail[: int(0.003 * SR)] = 0.0  # diffuse part starts a few ms after the direct sound
    drr = rng.uniform(-2.0, 10.0)
    tail *= 10 ** (-drr / 20) / np.sqrt(np.sum(tail**2) + 1e-12)
    tail[0] += 1.0
    return tail.astype(np.float32)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2) + 1e-20))


def make_clip(
    rng: np.random.Generator,
    utts: list[Utterance],
    noises: list[tuple[str, np.ndarray]],
    reverb_p: float = 0.7,
    seconds: float = CLIP_SECONDS,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """One mixture: (audio float32, frame counts int8 per 0.1 s, metadata)."""
    from scipy.signal import fftconvolve

    n = int(seconds * SR)
    n_frames, n_act = n // FRAME, n // ACT_HOP
    k = int(rng.choice(4, p=COUNT_PROBS))
    speakers = sorted({u.speaker for u in utts})
    chosen = rng.choice(len(speakers), size=k, replace=False) if k else []
    mix = np.zeros(n, dtype=np.float64)
    counts = np.zeros(n_frames, dtype=np.int8)
    reverb = bool(rng.random() < reverb_p)
    sources, active_speakers = [], []
    for si in chosen:
        spk = speakers[int(si)]
        cands = [u for u in utts if u.speaker == spk]
        u = cands[int(rng.integers(len(cands)))]
        u_len = u.active.size  # in 10 ms steps
        seg = int(rng.integers(min(150, u_len), min(n_act, u_len) + 1))  # >= 1.5 s
        src_start = int(rng.integers(0, u_len - seg + 1))
        off = int(rng.integers(0, n_act - seg + 1))
        gain_db = float(rng.uniform(-5, 5))
        x = u.audio[src_start * ACT_HOP : (src_start + seg) * ACT_HOP] * 10 ** (gain_db / 20)
        if reverb:
            x = fftconvolve(x, synthetic_rir(rng))[: x.size]
        mix[off * ACT_HOP : off * ACT_HOP + x.size] += x
        act = np.zeros(n_act, dtype=bool)
        act[off : off + seg] = u.active[src_start : src_start + seg]
        frame_act = act[: n_frames * 10].reshape(n_frames, 10).mean(1) >= 0.5
        counts += frame_act.astype(np.int8)
        if frame_act.any():
            active_speakers.append(spk)
        sources.append(
            {
                "utt": u.uid,
                "speaker": spk,
                "from_s": src_start / 100,
                "at_s": off / 100,
                "seconds": seg / 100,
                "gain_db": round(gain_db, 2),
            }
        )
    counts = np.minimum(counts, 3)
    speech = mix[np.repeat(counts > 0, FRAME)[:n]] if counts.any() else mix[:0]
    speech_rms = _rms(speech) if speech.size else 1.0
    name, base = noises[int(rng.integers(len(noises)))]
    if rng.random() < 0.5:  # synthetic noise instead of a recorded one
        name, noise = synthetic_noise(rng, n)
    else:
        reps = -(-n // base.size) + 1
        start = int(rng.integers(0, base.size))
        noise = np.tile(base, reps)[start : start + n]
    snr = float(rng.uniform(0, 20))
    noise = noise * (speech_rms / _rms(noise) * 10 ** (-snr / 20))
    mix = mix + noise
    mix -= mix.mean()  # recorded DEMAND noise and 1/f^2 noise carry a DC offset
    level_db = float(rng.uniform(-50, -18))
    mix *= 10 ** (level_db / 20) / _rms(mix)
    peak = float(np.max(np.abs(mix)))
    if peak > 0.9:
        mix *= 0.9 / peak
    meta = {
        "sources": sources,
        "speakers": sorted(active_speakers),
        "noise": name,
        "snr_db": round(snr, 2) if counts.any() else None,
        "reverb": reverb,
        "level_dbfs": round(level_db, 2),
    }
    return mix.astype(np.float32), counts, meta


def quantize16(x: np.ndarray) -> np.ndarray:
    """What a 16-bit WAV stores and reads back (training reads the written files)."""
    return (np.clip(np.round(x * 32768.0), -32768, 32767) / 32768.0).astype(np.float32)
