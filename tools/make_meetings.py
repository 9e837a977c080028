#!/usr/bin/env python
"""Synthetic meetings for the pipeline evaluation (issue 18), built with a fixed seed from the
transcribed LibriSpeech utterances of the shared data.

    python tools/make_meetings.py --out /tmp/mas_meetings [--set quick|default|full] [--seed 0]
        [--long] [--hour] [--seconds 75]

LibriCSS-style sessions: utterances (leading/trailing silence trimmed) of 1, 2 or 3 speakers
placed one after another, the next speaker always a different one, each utterance overlapping
only the one before it, so that the overlap ratio -- time with two speakers / time with at
least one -- is the requested 0/10/20/30/40 %. Each speaker's utterances are reverberated with
that speaker's room impulse response (pyroomacoustics shoebox, RT60 0.2-0.45 s, speaker 0.8-2.5
m from the microphone), aligned on the direct path so the reference times stay those of the dry
speech; real noise is added at 0/5/10/20 dB SNR (speech power over the reference speech time):
VoiceBank-DEMAND noise (noisy minus clean of the same utterance) and AMI room noise (regions of
the AMI clips with no RTTM speech, 0.25 s away from every turn), cut and cross-faded.

Each meeting folder holds: mix.wav (16 kHz, 24-bit), sources.npy ((S, T) float32, each speaker's
reverberated speech, aligned with the mix, in meta["speakers"] order; mix = sum + noise),
ref.rttm (one turn per utterance), ref.seglst.json (meeteval SegLST, one entry per utterance,
LibriSpeech text), meta.json (speakers, overlap requested and built, SNR, seed, room, utterance
ids and times, noise pieces). `--long` adds a 10-minute 2-speaker meeting (speaker-id
stability), `--hour` a 1-hour single-speaker input (memory; mix.wav as 16-bit, no sources).
Same arguments -> same bytes.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SR = 16000
OVERLAPS = (0.0, 0.1, 0.2, 0.3, 0.4)
SNRS = (0.0, 5.0, 10.0, 20.0)
LEVEL = 0.05  # active RMS of a speaker at 0 dB gain (about -26 dBFS)
FADE_S = 0.02  # cross-fade between noise pieces
BUILDER_VERSION = 1


@dataclass(frozen=True)
class MeetingSpec:
    """One meeting to build: speakers, overlap ratio (0..1), SNR in dB (None: no noise)."""

    n_speakers: int
    overlap: float
    snr_db: float | None
    seconds: float = 75.0
    reverb: bool = True
    index: int = 0
    prefix: str = "m"

    @property
    def name(self) -> str:
        snr = "clean" if self.snr_db is None else f"snr{self.snr_db:g}"
        return f"{self.prefix}{self.n_speakers}spk_ov{round(100 * self.overlap)}_{snr}_{self.index}"


def meeting_set(kind: str, seconds: float = 75.0) -> list[MeetingSpec]:
    """The meetings of a set. quick: 3 short ones (tests, smoke runs); default: overlap sweep at
    10 dB and SNR sweep at 20 % overlap for 2 and 3 speakers, the SNR sweep for 1 speaker;
    full: every (speakers, overlap, SNR) combination."""
    if kind == "quick":
        return [
            MeetingSpec(1, 0.0, 20.0, 20.0),
            MeetingSpec(2, 0.2, 10.0, 25.0),
            MeetingSpec(3, 0.2, 10.0, 30.0),
        ]
    specs = [MeetingSpec(1, 0.0, snr, seconds) for snr in SNRS]
    for n in (2, 3):
        if kind == "full":
            specs += [MeetingSpec(n, ov, snr, seconds) for ov in OVERLAPS for snr in SNRS]
        elif kind == "default":
            specs += [MeetingSpec(n, ov, 10.0, seconds) for ov in OVERLAPS]
            specs += [MeetingSpec(n, 0.2, snr, seconds) for snr in SNRS if snr != 10.0]
        else:
            raise SystemExit(f"--set: expected quick, default or full, got {kind!r}")
    return specs


# ---------------------------------------------------------------------------- sources


def transcribed_utterances(data: Path) -> dict[str, list[dict]]:
    """speaker -> [{id, path, text}] of every LibriSpeech utterance with a transcript."""
    by_spk: dict[str, list[dict]] = {}
    with open(data / "MANIFEST.tsv", newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            if row["corpus"].lower().startswith("librispeech") and row["transcript"].strip():
                by_spk.setdefault(row["speaker"], []).append(
                    {"id": row["utterance_id"], "path": row["relpath"], "text": row["transcript"]}
                )
    for utts in by_spk.values():
        utts.sort(key=lambda u: u["id"])
    return dict(sorted(by_spk.items()))


_AUDIO_CACHE: dict[str, np.ndarray] = {}


def trimmed(data: Path, relpath: str) -> np.ndarray:
    """The utterance at 16 kHz without its leading/trailing silence (30 dB below its peak)."""
    if relpath not in _AUDIO_CACHE:
        import librosa

        from mlx_audio_stack.audio import load_audio

        x = load_audio(data / relpath, SR)
        _AUDIO_CACHE[relpath] = librosa.effects.trim(x, top_db=30)[0].astype(np.float32)
    return _AUDIO_CACHE[relpath]


def noise_pool(data: Path) -> list[tuple[str, np.ndarray]]:
    """(name, unit-RMS piece) of real noise: VoiceBank-DEMAND noisy - clean, and AMI regions
    with no RTTM speech (at least 0.5 s long, 0.25 s from any turn, not digital silence)."""
    from mlx_audio_stack.audio import load_audio
    from mlx_audio_stack.evaluation.rttm import read_rttm
    from mlx_audio_stack.evaluation.separation import demand_noise

    pool = demand_noise(data, SR)
    ami = data / "ami_meeting_clips"
    turns = read_rttm(ami / "debug.train.rttm")
    for uri in sorted(turns):
        x = load_audio(ami / f"{uri}.wav", SR)
        speech = np.zeros(x.size, bool)
        for s, e, _ in turns[uri]:
            speech[max(0, int((s - 0.25) * SR)) : max(0, int((e + 0.25) * SR))] = True
        edges = np.flatnonzero(np.diff(np.r_[0, (~speech).astype(np.int8), 0]))
        for a, b in zip(edges[::2], edges[1::2]):
            piece = x[a:b]
            if b - a >= SR // 2 and np.sqrt(np.mean(piece**2)) >= 1e-3:
                pool.append((f"ami/{uri}:{a / SR:.2f}-{b / SR:.2f}", piece))
    return [(name, (p / np.sqrt(np.mean(p**2))).astype(np.float32)) for name, p in pool]


def noise_track(rng: np.random.Generator, pool, n: int) -> tuple[np.ndarray, list[str]]:
    """`n` samples of cross-faded random pieces of the pool (unit RMS), and the pieces used."""
    fade = int(FADE_S * SR)
    ramp = np.sin(np.linspace(0, np.pi / 2, fade, dtype=np.float32)) ** 2
    out = np.zeros(n + fade, np.float32)
    pos, used = 0, []
    while pos < n:
        name, piece = pool[int(rng.integers(len(pool)))]
        piece = piece.copy()
        piece[:fade] *= ramp
        piece[-fade:] *= ramp[::-1]
        m = min(piece.size, out.size - pos)
        out[pos : pos + m] += piece[:m]
        used.append(name)
        pos += piece.size - fade
    return out[:n], used


# ---------------------------------------------------------------------------- layout


def schedule(
    rng: np.random.Generator,
    utts: dict[str, list[dict]],
    speakers: list[str],
    overlap: float,
    seconds: float,
    data: Path,
) -> list[dict]:
    """Utterances [{speaker, id, text, path, start, end}] (seconds) placed LibriCSS-style.

    Each new utterance overlaps only the previous one (another speaker), by the amount that
    brings the running overlap ratio O / U (two-speaker time / speech time) back to `overlap`,
    jittered by +-20 %; where no overlap is due, a pause of 0.1-1.0 s. The next speaker is drawn
    from those who have spoken least; each takes its utterances in a shuffled order, cycling
    when a long meeting needs more. Runs until `seconds` and until everyone has spoken."""
    queues = {s: [utts[s][i] for i in rng.permutation(len(utts[s]))] for s in speakers}
    taken = dict.fromkeys(speakers, 0)
    placed: list[dict] = []
    spk_end = dict.fromkeys(speakers, 0.0)
    O = U = 0.0  # noqa: N806  (overlapped time, speech time)
    while not placed or placed[-1]["end"] < seconds or min(taken.values()) == 0:
        prev = placed[-1] if placed else None
        choices = [
            s for s in speakers if prev is None or s != prev["speaker"] or len(speakers) == 1
        ]
        least = min(taken[s] for s in choices)  # every speaker talks about as often
        choices = [s for s in choices if taken[s] == least]
        spk = choices[int(rng.integers(len(choices)))]
        u = queues[spk][taken[spk] % len(queues[spk])]
        taken[spk] += 1
        d = trimmed(data, u["path"]).size / SR
        if prev is None:
            start = 0.5
            o = 0.0
        else:
            floor = max([spk_end[spk]] + [p["end"] for p in placed[:-1]])
            want = (overlap * (U + d) - O) / (1 + overlap) * rng.uniform(0.8, 1.2)
            o = min(want, 0.8 * d, 0.8 * (prev["end"] - prev["start"]), prev["end"] - floor)
            if overlap > 0 and o > 0.05:
                start = prev["end"] - o
            else:
                o = 0.0
                start = prev["end"] + rng.uniform(0.1, 1.0)
        start = round(start * SR) / SR
        end = start + d
        o = max(0.0, (prev["end"] - start) if prev else 0.0)
        O, U = O + o, U + d - o  # noqa: N806
        spk_end[spk] = end
        placed.append({**u, "speaker": spk, "start": start, "end": end})
    return placed


def overlap_ratio(intervals: list[tuple[float, float]], step: float = 0.001) -> float:
    """Time covered by two or more intervals / time covered by at least one (1 ms grid)."""
    n = int(max(e for _, e in intervals) / step) + 2
    count = np.zeros(n, np.int16)
    for s, e in intervals:
        count[int(round(s / step)) : int(round(e / step))] += 1
    active = np.count_nonzero(count)
    return float(np.count_nonzero(count >= 2) / active) if active else 0.0


def room(rng: np.random.Generator, n: int) -> tuple[list[np.ndarray], dict]:
    """One shoebox room: the impulse response from each of `n` speakers to one microphone."""
    import pyroomacoustics as pra

    dims = [rng.uniform(5, 9), rng.uniform(4, 7), rng.uniform(2.6, 3.2)]
    rt60 = rng.uniform(0.2, 0.45)
    absorption, max_order = pra.inverse_sabine(rt60, dims)
    r = pra.ShoeBox(dims, fs=SR, materials=pra.Material(absorption), max_order=max_order)
    mic = [rng.uniform(1.5, dims[0] - 1.5), rng.uniform(1.5, dims[1] - 1.5), rng.uniform(0.8, 1.2)]
    spots = []
    for _ in range(n):
        while True:  # a spot 0.8-2.5 m from the mic, 0.5 m inside the walls
            dist, ang = rng.uniform(0.8, 2.5), rng.uniform(0, 2 * np.pi)
            p = [mic[0] + dist * np.cos(ang), mic[1] + dist * np.sin(ang), rng.uniform(1.2, 1.8)]
            if 0.5 < p[0] < dims[0] - 0.5 and 0.5 < p[1] < dims[1] - 0.5:
                break
        spots.append(p)
        r.add_source(p)
    r.add_microphone(mic)
    r.compute_rir()
    info = {"dims_m": dims, "rt60_s": rt60, "mic": mic, "speakers_xyz": spots}
    return [np.asarray(r.rir[0][k], np.float32) for k in range(n)], info


# ---------------------------------------------------------------------------- build


def build(spec: MeetingSpec, data: Path, out: Path, seed: int = 0, pool=None) -> dict:
    """Write one meeting to `out/<spec.name>/` (temp folder + rename) and return its meta."""
    import shutil

    import soundfile as sf
    from scipy.signal import fftconvolve

    from mlx_audio_stack.errors import MasError

    if spec.snr_db is not None and pool is None:
        pool = noise_pool(data)
    mseed = [
        seed,
        spec.n_speakers,
        round(100 * spec.overlap),
        -1 if spec.snr_db is None else round(spec.snr_db),
        spec.index,
        round(spec.seconds),
        int(spec.reverb),
    ]
    rng = np.random.default_rng(np.random.SeedSequence(mseed))
    utts = transcribed_utterances(data)
    if len(utts) < spec.n_speakers:
        raise MasError(f"{data}: {len(utts)} transcribed speakers, need {spec.n_speakers}")
    names = list(utts)
    speakers = [names[i] for i in sorted(rng.choice(len(names), spec.n_speakers, replace=False))]
    best = None
    for _ in range(20):  # the last utterances can miss the ratio: redraw (still seeded)
        placed = schedule(rng, utts, speakers, spec.overlap, spec.seconds, data)
        err = abs(overlap_ratio([(u["start"], u["end"]) for u in placed]) - spec.overlap)
        if best is None or err < best[0]:
            best = (err, placed)
        if err <= 0.01:
            break
    placed = best[1]
    total = int(round((placed[-1]["end"] + 0.5) * SR))
    gains = {s: float(rng.uniform(-3, 3)) for s in speakers}
    rirs, room_info = room(rng, len(speakers)) if spec.reverb else (None, None)
    sources = np.zeros((len(speakers), total), np.float32)
    for k, spk in enumerate(speakers):
        for u in (u for u in placed if u["speaker"] == spk):
            x = trimmed(data, u["path"])
            x = x / (np.sqrt(np.mean(x**2)) + 1e-8)
            if rirs is not None:  # keep the direct path at the dry speech's time
                x = fftconvolve(x, rirs[k])[int(np.argmax(np.abs(rirs[k]))) :]
            a = int(round(u["start"] * SR))
            m = min(x.size, total - a)
            sources[k, a : a + m] += x[:m]
        active = np.zeros(total, bool)
        for u in placed:
            if u["speaker"] == spk:
                active[int(round(u["start"] * SR)) : int(round(u["end"] * SR))] = True
        level = np.sqrt(np.mean(sources[k, active] ** 2))
        sources[k] *= LEVEL * 10 ** (gains[spk] / 20) / level
    speech = sources.sum(0)
    mix, noise_used = speech.copy(), []
    if spec.snr_db is not None:
        noise, noise_used = noise_track(rng, pool, total)
        any_active = np.zeros(total, bool)
        for u in placed:
            any_active[int(round(u["start"] * SR)) : int(round(u["end"] * SR))] = True
        p_s = np.mean(speech[any_active].astype(np.float64) ** 2)
        p_n = np.mean(noise[any_active].astype(np.float64) ** 2)
        mix = speech + (noise * np.sqrt(p_s / (p_n * 10 ** (spec.snr_db / 10)))).astype(np.float32)
    peak = float(np.max(np.abs(mix)))
    if peak > 0.99:  # keep float32 in [-1, 1]: scale everything together
        mix, sources = mix * (0.99 / peak), sources * (0.99 / peak)
    built_ov = overlap_ratio([(u["start"], u["end"]) for u in placed])
    meta = {
        "name": spec.name,
        "spec": asdict(spec),
        "seed": seed,
        "seed_sequence": mseed,
        "builder_version": BUILDER_VERSION,
        "sample_rate": SR,
        "duration_s": total / SR,
        "speakers": speakers,
        "speaker_gain_db": gains,
        "overlap_requested": spec.overlap,
        "overlap_built": built_ov,
        "snr_db": spec.snr_db,
        "room": room_info,
        "utterances": [
            {k: u[k] for k in ("id", "speaker", "start", "end", "text")} for u in placed
        ],
        "noise_pieces": noise_used,
    }
    final = out / spec.name
    tmp = out / f".{spec.name}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    # 24-bit PCM: float WAVs carry a PEAK chunk with a time stamp (same seed, other bytes)
    sf.write(str(tmp / "mix.wav"), mix.astype(np.float32), SR, subtype="PCM_24")
    np.save(tmp / "sources.npy", sources.astype(np.float32))
    write_references(tmp, spec.name, placed)
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    return meta


def write_references(folder: Path, session: str, placed: list[dict]) -> None:
    """ref.rttm (one SPEAKER turn per utterance) and ref.seglst.json (meeteval SegLST)."""
    rttm = [
        f"SPEAKER {session} 1 {u['start']:.3f} {u['end'] - u['start']:.3f} <NA> <NA> "
        f"{u['speaker']} <NA> <NA>"
        for u in placed
    ]
    (folder / "ref.rttm").write_text("\n".join(rttm) + "\n")
    seglst = [
        {
            "session_id": session,
            "speaker": u["speaker"],
            "start_time": round(u["start"], 3),
            "end_time": round(u["end"], 3),
            "words": u["text"],
        }
        for u in placed
    ]
    (folder / "ref.seglst.json").write_text(json.dumps(seglst, indent=1) + "\n")


def build_hour(data: Path, out: Path, seed: int = 0, minutes: float = 60.0) -> dict:
    """A `minutes`-long single-speaker input (no noise, no reverb), 16-bit: memory runs."""
    import shutil

    import soundfile as sf

    spec = MeetingSpec(1, 0.0, None, minutes * 60, reverb=False, prefix="hour")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 60, round(minutes)]))
    utts = transcribed_utterances(data)
    spk = max(utts, key=lambda s: sum(trimmed(data, u["path"]).size for u in utts[s]))
    placed = schedule(rng, utts, [spk], 0.0, minutes * 60, data)
    total = int(round((placed[-1]["end"] + 0.5) * SR))
    final, tmp = out / spec.name, out / f".{spec.name}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with sf.SoundFile(str(tmp / "mix.wav"), "w", SR, 1, "PCM_16") as f:
        pos = 0
        for u in placed:  # written utterance by utterance: the hour is never held in memory
            a = int(round(u["start"] * SR))
            f.write(np.zeros(a - pos, np.float32))
            x = trimmed(data, u["path"])
            x = x / (np.sqrt(np.mean(x**2)) + 1e-8) * LEVEL
            f.write(x)
            pos = a + x.size
        f.write(np.zeros(total - pos, np.float32))
    write_references(tmp, spec.name, placed)
    meta = {
        "name": spec.name,
        "spec": asdict(spec),
        "seed": seed,
        "speakers": [spk],
        "duration_s": total / SR,
        "utterances": len(placed),
    }
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    return meta


def main() -> int:
    import mlx_audio_stack  # noqa: F401  (fast BLAS first)
    from mlx_audio_stack.paths import data_dir

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("/tmp/mas_meetings"))
    ap.add_argument("--set", default="default", choices=["quick", "default", "full", "none"])
    ap.add_argument("--seconds", type=float, default=75.0, help="meeting length (default set)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--long", action="store_true", help="add the 10-minute 2-speaker meeting")
    ap.add_argument("--hour", action="store_true", help="add the 1-hour single-speaker input")
    a = ap.parse_args()
    data = data_dir()
    if data is None:
        raise SystemExit("shared data not found: set MAS_DATA_DIR")
    specs = [] if a.set == "none" else meeting_set(a.set, a.seconds)
    if a.long:
        specs.append(MeetingSpec(2, 0.2, 10.0, 600.0, prefix="long"))
    pool = noise_pool(data)
    a.out.mkdir(parents=True, exist_ok=True)
    for spec in specs:
        m = build(spec, data, a.out, a.seed, pool)
        print(
            f"{m['name']}: {m['duration_s']:.1f} s, {len(m['utterances'])} utterances, "
            f"overlap {100 * m['overlap_built']:.1f} %",
            flush=True,
        )
    if a.hour:
        m = build_hour(data, a.out, a.seed)
        print(f"{m['name']}: {m['duration_s'] / 60:.1f} min, {m['utterances']} utterances")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
