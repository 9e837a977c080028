"""The built-in demo meeting: three real LibriSpeech speakers from the bundled assets (two of
them women, one a man), each speaking twice, with two overlaps and DEMAND-style noise at
15 dB SNR. Deterministic: the same samples on every machine (see assets/NOTICE.md)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..audio import load_audio
from ..paths import ASSETS_DIR
from .config import SAMPLE_RATE

SPEAKERS = (  # (label, asset, transcript)
    (
        "1089",
        "1089-134686-0000.flac",
        "HE HOPED THERE WOULD BE STEW FOR DINNER TURNIPS AND CARROTS AND BRUISED POTATOES AND "
        "FAT MUTTON PIECES TO BE LADLED OUT IN THICK PEPPERED FLOUR FATTENED SAUCE",
    ),
    (
        "2412",
        "2412-153948-0000.flac",
        "IF THE READER WILL EXCUSE ME I WILL SAY NOTHING OF MY ANTECEDENTS NOR OF THE "
        "CIRCUMSTANCES WHICH LED ME TO LEAVE MY NATIVE COUNTRY THE NARRATIVE WOULD BE TEDIOUS "
        "TO HIM AND PAINFUL TO MYSELF",
    ),
    (
        "3331",
        "3331-159605-0009.flac",
        "I DON'T THINK IT WAS HIS WEALTH ACCOMPLISHMENTS OR POSITION THAT MOST ATTRACTED POLLY "
        "THOUGH THESE DOUBTLESS POSSESSED A GREATER INFLUENCE THAN SHE SUSPECTED",
    ),
)
NOISE = "demo-noise-p287_003.flac"
SNR_DB = 15.0
# (speaker index, half, offset in s from the previous utterance's end; negative = overlap)
LAYOUT = ((0, 0, 0.5), (1, 0, -0.8), (2, 0, 0.4), (0, 1, 0.5), (1, 1, -1.0), (2, 1, 0.4))


@dataclass
class DemoMeeting:
    mix: np.ndarray  # (T,) float32 at 16 kHz
    sources: np.ndarray  # (3, T) each speaker's clean part of the mix
    turns: list[tuple[str, float, float]]  # reference (speaker, start, end)
    texts: dict[str, str]  # speaker -> what they said (reference words, upper case)


def _split_at_pause(x: np.ndarray) -> int:
    """The quietest 200 ms between 35 % and 65 % of the utterance: where it is cut in two."""
    win = int(0.2 * SAMPLE_RATE)
    lo, hi = int(0.35 * x.size), int(0.65 * x.size)
    energy = np.convolve(np.square(x), np.ones(win, np.float32), mode="valid")
    return lo + int(np.argmin(energy[lo:hi])) + win // 2


def demo_meeting() -> DemoMeeting:
    """Build the demo meeting from the bundled assets."""
    halves = []
    for _, asset, _ in SPEAKERS:
        x = load_audio(ASSETS_DIR / asset, SAMPLE_RATE)
        x = x / (np.sqrt(np.mean(np.square(x))) + 1e-9) * 0.05  # equal loudness
        cut = _split_at_pause(x)
        halves.append((x[:cut], x[cut:]))
    placed, t = [], 0.0
    for spk, half, offset in LAYOUT:
        start = max(0.0, t + offset)
        seg = halves[spk][half]
        placed.append((spk, int(start * SAMPLE_RATE), seg))
        t = start + seg.size / SAMPLE_RATE
    total = max(s + seg.size for _, s, seg in placed) + SAMPLE_RATE // 2
    sources = np.zeros((len(SPEAKERS), total), np.float32)
    turns = []
    for spk, s, seg in placed:
        sources[spk, s : s + seg.size] += seg
        turns.append((SPEAKERS[spk][0], s / SAMPLE_RATE, (s + seg.size) / SAMPLE_RATE))
    speech = sources.sum(axis=0)
    noise = load_audio(ASSETS_DIR / NOISE, SAMPLE_RATE)
    noise = np.resize(noise, total)  # looped
    active = np.abs(speech) > 1e-4
    p_speech = float(np.mean(np.square(speech[active])))
    p_noise = float(np.mean(np.square(noise))) + 1e-12
    noise = noise * np.sqrt(p_speech / p_noise / 10 ** (SNR_DB / 10))
    mix = (speech + noise).astype(np.float32)
    return DemoMeeting(mix, sources, turns, {lab: txt for lab, _, txt in SPEAKERS})
