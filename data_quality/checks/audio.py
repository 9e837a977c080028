"""Audio integrity. Cheap (default): one header read + a tail read per file, no decoding.
Deep: every record's segment decoded in blocks (bounded memory) for NaN/inf, clipping,
digital silence, DC offset, short decodes, and a PCM fingerprint for leak/duplicate checks."""

from __future__ import annotations

import hashlib
import os
import stat
from collections import defaultdict

import numpy as np
import soundfile as sf

from mlx_audio_stack.audio import MAX_ABS, wav_truncation
from mlx_audio_stack.data.fingerprint import fingerprint, full_hash

from ..core import Context, Finding, check
from ._util import num, rid
from .schema import TOL_S

TAIL_FRAMES = 256  # frames read at the end of each file: a truncated file fails here
BLOCK_FRAMES = 1 << 16  # deep mode reads this many frames at a time
CLIP_LEVEL = 0.999
CLIP_WARN, CLIP_ERROR = 0.001, 0.01  # share of samples at full scale
SILENCE_RMS = 1e-4  # -80 dBFS: no real recording is this quiet
DC_WARN, DC_ERROR = 0.01, 0.05


def _probe_file(path: str) -> tuple[str | None, tuple | None, str | dict | None]:
    """(problem kind, (sr, channels, frames), detail) for one file, reading header and tail.
    Without a problem, detail is the file's gate fingerprint (size, mtime, partial hash)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "missing", None, "no such file"
    except OSError as exc:
        return "unreadable", None, exc.strerror
    if not stat.S_ISREG(st.st_mode):  # opening a FIFO would block: refuse before open()
        return "unreadable", None, "not a regular file (a FIFO, device or folder)"
    size = st.st_size
    try:
        with sf.SoundFile(path) as f:
            head = (f.samplerate, f.channels, f.frames)
            if f.frames > 0:
                n = min(f.frames, TAIL_FRAMES)
                f.seek(f.frames - n)
                got = f.read(n, dtype="float32", always_2d=True).shape[0]
                if got < n:
                    return "truncated", head, f"read {got} of the last {n} frames"
    except sf.LibsndfileError as exc:
        return ("truncated" if "seek" in str(exc).lower() else "unreadable"), None, str(exc)
    except Exception as exc:  # soundfile raises several types for broken files
        return "unreadable", None, str(exc)[:200]
    cut = wav_truncation(path, size)
    if cut:
        return "truncated", head, cut
    if head[2] == 0:
        return "empty", head, "no audio (0 samples)"
    try:
        return None, head, fingerprint(path)
    except OSError as exc:
        return "unreadable", head, str(exc)


@check("audio", "files exist and decode; rate/channels/duration match the header; not truncated")
def audio_cheap(ctx: Context) -> list[Finding]:
    by_file: dict[str, list[int]] = defaultdict(list)
    audio_of: dict[str, set[str]] = defaultdict(set)  # file -> the manifest's strings for it
    for i, rec in enumerate(ctx.records):
        if isinstance(rec.get("audio"), str):
            path = ctx.manifest.audio_file(rec)
            by_file[path].append(i)
            audio_of[path].add(rec["audio"])
    headers, fps, out, gate_files = {}, {}, [], {}
    items = by_file.items()
    if ctx.progress and len(by_file) > 2000:
        from tqdm import tqdm

        items = tqdm(items, total=len(by_file), desc="qa: audio headers", unit="file")
    for path, idx in items:
        kind, head, detail = _probe_file(path)
        if kind:
            exp = {
                "missing": "an existing file",
                "truncated": "a complete file",
                "empty": "at least one sample",
            }.get(kind, "a readable audio file")
            out.append(
                Finding(f"audio.{kind}", "error", path, exp, f"{detail} ({len(idx)} records)")
            )
            if head is None:
                continue
        else:
            fps[path] = detail["partial"]
            for a in audio_of[path]:
                gate_files[a] = detail
        headers[path] = head
        sr, ch, frames = head
        file_dur = frames / sr
        for i in idx:
            rec = ctx.records[i]
            item = rid(rec, i)
            if rec.get("sample_rate") not in (None, sr) or rec.get("channels") not in (None, ch):
                out.append(
                    Finding(
                        "audio.format",
                        "error",
                        item,
                        f"{rec.get('sample_rate')} Hz, {rec.get('channels')} ch (manifest)",
                        f"{sr} Hz, {ch} ch in {path}",
                    )
                )
            start, end, dur = num(rec, "start") or 0.0, num(rec, "end"), num(rec, "duration")
            stop = end if end is not None else (None if dur is None else start + dur)
            if stop is not None and stop > file_dur + TOL_S:
                out.append(
                    Finding(
                        "audio.bounds",
                        "error",
                        item,
                        f"segment end <= file duration {file_dur:.3f} s",
                        f"{stop:.3f} s",
                    )
                )
            elif end is None and start == 0 and dur is not None and abs(dur - file_dur) > TOL_S:
                out.append(
                    Finding(
                        "audio.duration",
                        "error",
                        item,
                        f"duration == file's {file_dur:.3f} s",
                        f"{dur:.3f} s",
                    )
                )
    ctx.cache["headers"], ctx.cache["file_fp"] = headers, fps
    ctx.cache["gate_files"] = gate_files  # the verdict's fingerprints (mlx_audio_stack.data.gate)
    return out


def _segment_stats(path: str, start: float, stop: float | None) -> dict:
    """Stream one segment: counts, extremes, sums and a fingerprint of its int16 PCM."""
    h = hashlib.sha1()
    n = nonfinite = clipped = 0
    peak = total = sq = 0.0
    with sf.SoundFile(path) as f:
        a = int(round(start * f.samplerate))
        # not clamped to the file: a segment the file cannot fill decodes short
        b = f.frames if stop is None else int(round(stop * f.samplerate))
        want = max(0, b - a)
        f.seek(a)
        while n < want:
            x = f.read(min(BLOCK_FRAMES, want - n), dtype="float32", always_2d=True)
            if x.shape[0] == 0:
                break
            n += x.shape[0]
            bad = ~np.isfinite(x)
            if bad.any():
                nonfinite += int(bad.sum())
                x = np.where(bad, 0.0, x)
            ax = np.abs(x)
            peak = max(peak, float(ax.max()))
            clipped += int((ax >= CLIP_LEVEL).sum())
            total += float(x.sum(dtype=np.float64))
            sq += float(np.square(x, dtype=np.float64).sum())
            h.update(np.clip(np.round(x * 32767), -32768, 32767).astype("<i2").tobytes())
        ch, sr = f.channels, f.samplerate
    m = max(1, n * ch)
    return {
        "frames": n,
        "want": want,
        "sr": sr,
        "nonfinite": nonfinite,
        "peak": peak,
        "clip": clipped / m,
        "mean": total / m,
        "rms": (sq / m) ** 0.5,
        "fp": h.hexdigest(),
    }


@check(
    "audio_deep",
    "decode every segment: NaN/inf, clipping, digital silence, DC offset",
    deep_only=True,
)
def audio_deep(ctx: Context) -> list[Finding]:
    headers = ctx.cache.get("headers", {})
    order = sorted(
        (
            i
            for i, r in enumerate(ctx.records)
            if isinstance(r.get("audio"), str) and ctx.manifest.audio_file(r) in headers
        ),
        key=lambda i: (str(ctx.records[i]["audio"]), num(ctx.records[i], "start") or 0),
    )
    from tqdm import tqdm

    out, fps = [], {}
    for i in tqdm(order, desc="qa: decoding", unit="rec", disable=not ctx.progress):
        rec = ctx.records[i]
        item, path = rid(rec, i), ctx.manifest.audio_file(rec)
        start = num(rec, "start") or 0.0
        end, dur = num(rec, "end"), num(rec, "duration")
        stop = end if end is not None else (None if dur is None else start + dur)
        try:
            s = _segment_stats(path, start, stop)
        except Exception as exc:
            out.append(
                Finding(
                    "audio_deep.decode",
                    "error",
                    item,
                    "a decodable segment",
                    f"{type(exc).__name__}: {str(exc)[:160]}",
                )
            )
            continue
        fps[item] = s["fp"]
        if s["want"] - s["frames"] > TOL_S * s["sr"]:
            out.append(
                Finding(
                    "audio_deep.truncated",
                    "error",
                    item,
                    f"{s['want']} decoded frames",
                    f"{s['frames']}",
                )
            )
        if s["nonfinite"]:
            out.append(
                Finding(
                    "audio_deep.nonfinite",
                    "error",
                    item,
                    "finite samples",
                    f"{s['nonfinite']} NaN/inf samples",
                )
            )
        if s["peak"] > 1.0:  # float files only: PCM decodes within [-1, 1]
            sev = "error" if s["peak"] > MAX_ABS else "warning"
            out.append(
                Finding(
                    "audio_deep.range",
                    sev,
                    item,
                    "samples within [-1, 1]" if sev == "warning" else f"|x| <= {MAX_ABS:g}",
                    f"peak {s['peak']:.3g}",
                )
            )
        if s["clip"] > CLIP_WARN:
            sev = "error" if s["clip"] > CLIP_ERROR else "warning"
            out.append(
                Finding(
                    "audio_deep.clipping",
                    sev,
                    item,
                    f"<= {CLIP_WARN:.1%} samples at full scale",
                    f"{s['clip']:.2%}",
                )
            )
        if s["frames"] and s["peak"] == 0.0:
            out.append(
                Finding(
                    "audio_deep.silence",
                    "error",
                    item,
                    "non-zero samples",
                    "digital silence (all samples 0)",
                )
            )
        elif s["frames"] and s["rms"] < SILENCE_RMS:
            out.append(
                Finding(
                    "audio_deep.silence",
                    "warning",
                    item,
                    f"rms >= {SILENCE_RMS:g}",
                    f"rms {s['rms']:.2e}",
                )
            )
        if abs(s["mean"]) > DC_WARN:
            sev = "error" if abs(s["mean"]) > DC_ERROR else "warning"
            out.append(
                Finding(
                    "audio_deep.dc_offset", sev, item, f"|mean| <= {DC_WARN}", f"{s['mean']:+.4f}"
                )
            )
    ctx.cache["pcm_fp"] = fps
    # the full sha256 of each file the deep verdict vouches for (one more sequential read)
    gate_files = ctx.cache.get("gate_files", {})
    by_path: dict[str, list[str]] = defaultdict(list)
    for a in gate_files:
        by_path[ctx.manifest.audio_file({"audio": a})].append(a)
    for path, names in by_path.items():
        try:
            digest = full_hash(path)
        except OSError as exc:
            out.append(Finding("audio_deep.decode", "error", path, "a readable file", str(exc)))
            continue
        for a in names:
            gate_files[a] = {**gate_files[a], "sha256": digest}
    return out
