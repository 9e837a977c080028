"""The encoder-feature cache: every Whisper encoder block's output for each manifest record,
pooled in time, in sharded safetensors, so heads train without re-running the encoder.

Layout of `<out>/` (chosen to keep the disk small, after whisper-at, which stores all layers
mean-pooled 20x in time; here 5x so speaker count keeps 0.1 s frames):
    shard-00000.safetensors ...  one tensor per record, key = record id,
                                 (L, ceil(n / pool), C) float16: L = every encoder block's
                                 output (before ln_post), n = the record's 20 ms encoder frames
    index.json                   provenance: manifest path + sha256, weights + sha256 of
                                 model.safetensors, layers, pool, dtype; the shards and ids
whisper-base (6 x 512) at pool 5: 61 kB per second of audio, 221 MB per hour.

Records are encoded as `mas transcribe` encodes audio: the log-mel of the whole record, cut
into 30 s windows, each window's mel zero-padded to 3000 frames (`iter_windows`); only the
frames that hold audio are kept. (Version 1 padded with the log-mel of silent audio instead,
which `transcribe` never feeds the encoder.) Shards are written atomically (temp + rename)
and the index after each one, so a run killed at any point resumes where it stopped:
finished shards are skipped.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_output
from ..errors import MasError
from ..weights_io import WEIGHTS_FILE, load_safetensors, safetensors_header, sha256_file

INDEX = "index.json"
CACHE_VERSION = 2  # 2: windows zero-padded in the mel as transcribe pads them


class FeatureCacheError(MasError):
    """A feature cache cannot be built or read (mismatch with the manifest or the weights)."""


def iter_windows(model, audio: np.ndarray, pool: int) -> Iterator[tuple[int, Any]]:
    """(first encoder frame, (L, ceil(n / pool), C) float32 mx.array) per 30 s window of
    16 kHz `audio`, encoded exactly as `transcribe` encodes it: the window's log-mel frames
    that hold audio, zero-padded to 3000 frames (openai-whisper's `pad_or_trim` of the mel
    slice), so heads see at inference the features they were trained on. n = the window's
    encoder frames that hold audio (50 per second)."""
    import mlx.core as mx

    from ..models.whisper.audio import (
        HOP_LENGTH,
        N_FRAMES,
        N_SAMPLES,
        log_mel_spectrogram,
        pad_or_trim,
    )
    from .model import pool_time

    mel = log_mel_spectrogram(audio, model.dims.n_mels, padding=N_SAMPLES)  # (frames, n_mels)
    content = max(1, audio.size // HOP_LENGTH)  # mel frames that hold audio
    n_total = math.ceil(content / 2)  # encoder frames (stride-2 conv)
    win = N_FRAMES // 2  # encoder frames per 30 s window
    if win % pool:
        raise FeatureCacheError(f"pool {pool} must divide the {win} frames of a 30 s window")
    for start in range(0, n_total, win):
        seg = pad_or_trim(mel[2 * start : min(2 * start + N_FRAMES, content)])[None]
        _, layers = model.embed_audio(seg, return_layers=True)
        stacked = mx.stack([x[0] for x in layers])  # (L, 1500, C)
        yield start, pool_time(stacked.astype(mx.float32), pool, min(win, n_total - start))


def encode_layers(model, audio: np.ndarray, pool: int) -> np.ndarray:
    """(L, ceil(n / pool), C) float32 pooled block outputs of 16 kHz `audio` (n = encoder
    frames that hold audio, 50 per second; windows as `iter_windows`)."""
    return np.concatenate([np.array(p) for _, p in iter_windows(model, audio, pool)], axis=1)


def _record_audio(manifest, rec: dict) -> np.ndarray:
    from ..audio import load_audio

    x = load_audio(manifest.audio_file(rec))
    start = float(rec.get("start") or 0.0)
    end = rec.get("end")
    a = int(round(start * 16000))
    b = x.size if end is None else int(round(float(end) * 16000))
    x = x[a:b]
    if x.size < 400:  # the STFT needs more than a window
        x = np.pad(x, (0, 400 - x.size))
    return x


@dataclass
class FeatureCache:
    """A finished (or partial) cache folder: `index` and per-record access."""

    path: Path
    index: dict[str, Any]

    @property
    def ids(self) -> list[str]:
        return [i for s in self.index["shards"] for i in s["ids"]]

    def shards(self) -> Iterator[dict[str, np.ndarray]]:
        """Each shard's {record id: (L, T, C)} in the stored dtype (float16 halves memory;
        batches are made float32)."""
        for s in self.index["shards"]:
            w = load_safetensors(self.path / s["file"], FeatureCacheError)
            yield {k: np.array(v) for k, v in w.items()}

    def load_all(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for s in self.shards():
            out.update(s)
        return out


def read_index(path: Path, name: str, error: type[Exception], what: str) -> dict:
    """A sharded folder's JSON index `path / name`; `error` names the folder when there is
    none ("not a <what>") or the file when it cannot be read. Feature caches and soft-label
    folders share this layout."""
    try:
        return json.loads((path / name).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{path}: no {name}; not a {what}") from None
    except (OSError, ValueError) as exc:
        raise error(f"{path / name}: unreadable ({exc})") from None


def open_cache(path: str | Path) -> FeatureCache:
    """Read a cache folder's index (raises FeatureCacheError when there is none)."""
    path = Path(path)
    index = read_index(path, INDEX, FeatureCacheError, "feature cache")
    if not isinstance(index, dict) or index.get("version") != CACHE_VERSION:
        raise FeatureCacheError(f"{path / INDEX}: not a version-{CACHE_VERSION} cache index")
    return FeatureCache(path, index)


def _write_index(out: Path, index: dict) -> None:
    with atomic_output(out / INDEX) as tmp:
        tmp.write_text(json.dumps(index, indent=1) + "\n", encoding="utf-8")


def _shard_done(path: Path, ids: list[str]) -> bool:
    if not path.is_file():
        return False
    try:
        header = safetensors_header(path, FeatureCacheError)
    except FeatureCacheError:
        return False  # a damaged shard is rebuilt
    return sorted(k for k in header if k != "__metadata__") == sorted(ids)


def cache_features(
    manifest: str | Path,
    model_dir: str | Path,
    out: str | Path,
    pool: int = 5,
    shard_size: int = 64,
    dtype: str = "float16",
    progress: bool = False,
    registry: str | Path | None = None,
    command: str | None = None,
) -> FeatureCache:
    """Build (or resume) the feature cache of `manifest` with the Whisper weights in
    `model_dir` into `out`; registers it as derived data in `registry` (default
    `<out>/../derived.json`). Returns the finished cache."""
    import mlx.core as mx
    from tqdm import tqdm

    from ..data.manifest import read_manifest
    from ..data.registry import DERIVED_JSON, DerivedArtifact, register_derived
    from ..models.whisper.load import load_model
    from ..paths import REPO_ROOT

    if dtype not in ("float16", "float32"):
        raise FeatureCacheError(f"dtype must be float16 or float32, got {dtype!r}")
    if shard_size < 1 or pool < 1:
        raise FeatureCacheError("shard_size and pool must be >= 1")
    out, model_dir = Path(out), Path(model_dir)
    m = read_manifest(manifest)
    if m.parse_errors:
        line, msg = m.parse_errors[0]
        raise FeatureCacheError(f"{manifest}: line {line}: {msg}")
    ids = [str(r.get("id")) for r in m.records]
    if len(set(ids)) != len(ids):
        raise FeatureCacheError(f"{manifest}: record ids are not unique")
    wfile = model_dir / WEIGHTS_FILE
    if not wfile.is_file():
        raise FeatureCacheError(f"{model_dir}: no {WEIGHTS_FILE} (not a Whisper weights folder)")
    model = load_model(model_dir, mx.float32)
    d = model.dims
    want = {
        "version": CACHE_VERSION,
        "manifest": str(Path(manifest).resolve()),
        "manifest_sha256": m.content_hash,
        "weights": str(model_dir.resolve()),
        "weights_sha256": sha256_file(wfile),
        "model": model_dir.name,
        "n_mels": d.n_mels,
        "n_layers": d.n_audio_layer,
        "n_state": d.n_audio_state,
        "layers": "every encoder block's output, 1..n_layers, before ln_post",
        "pool": pool,
        "frame_seconds": pool / 50,
        "dtype": dtype,
        "shard_size": shard_size,
        "n_records": len(ids),
    }
    if (out / INDEX).is_file():
        old = open_cache(out).index
        diff = [k for k in want if k not in ("manifest", "weights") and old.get(k) != want[k]]
        if diff:
            k = diff[0]
            raise FeatureCacheError(
                f"{out}: holds a cache with {k} = {old.get(k)!r}, this run has {want[k]!r}; "
                "give another --out folder (or delete that one)"
            )
        prior_s = float(old.get("build_seconds", 0.0))
    else:
        prior_s = 0.0
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    chunks = [m.records[i : i + shard_size] for i in range(0, len(ids), shard_size)]
    shards = []
    np_dtype = np.float16 if dtype == "float16" else np.float32
    bar = tqdm(total=len(ids), desc="encoder features", unit="rec", disable=not progress)
    for k, recs in enumerate(chunks):
        name = f"shard-{k:05d}.safetensors"
        sids = [str(r["id"]) for r in recs]
        entry = {"file": name, "ids": sids}
        if not _shard_done(out / name, sids):
            arrays = {}
            for r in recs:
                feats = encode_layers(model, _record_audio(m, r), pool)
                arrays[str(r["id"])] = mx.array(feats.astype(np_dtype))
                bar.update(1)
            with atomic_output(out / name) as tmp:
                # mx.save_safetensors appends the suffix when the name lacks it
                tmp_st = tmp.with_name(tmp.name + ".safetensors")
                mx.save_safetensors(str(tmp_st), arrays, metadata={"format": "mlx"})
                os.replace(tmp_st, tmp)
        else:
            bar.update(len(recs))
        shards.append(entry)
        spent = round(prior_s + time.perf_counter() - t_start, 1)
        _write_index(out, {**want, "complete": False, "build_seconds": spent, "shards": shards})
    bar.close()
    spent = round(prior_s + time.perf_counter() - t_start, 1)
    index = {**want, "complete": True, "build_seconds": spent, "shards": shards}
    _write_index(out, index)
    reg = Path(registry) if registry else out.resolve().parent / "derived.json"
    cmd = command or f"mas features cache {manifest} --model {model_dir} --out {out}"
    loc, src = str(out.resolve()), str(Path(manifest).resolve())
    if reg.resolve() == DERIVED_JSON.resolve():  # the project's registry names no local paths
        loc, src = os.path.relpath(loc, REPO_ROOT), os.path.relpath(src, REPO_ROOT)
    register_derived(
        DerivedArtifact(
            f"features:{m.name}:{model_dir.name}",
            "feature-cache",
            loc,
            cmd,
            source_manifest=src,
            source_manifest_hash=m.content_hash,
            description=f"{model_dir.name} encoder block outputs, pool {pool}, {dtype}",
        ),
        reg,
    )
    return FeatureCache(out, index)
