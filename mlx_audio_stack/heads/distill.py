"""Soft-label distillation of the Whisper heads: a teacher's probabilities at temperature T,
stored compactly, and the student loss that trains on them.

Soft labels (`distill_labels`): for every manifest record and every multi-class segment task
of the teacher, softmax(teacher logits / T), kept as the k most probable classes
(index, probability) plus the rest mass 1 - sum(top k); `dense_probs` spreads the rest
evenly over the other classes. Folder layout (like the feature cache):
    shard-00000.safetensors ...  per task: `<task>.index` (N, k) int32, `<task>.prob` (N, k)
                                 float32, `<task>.rest` (N,) float32; rows in `ids` order;
                                 k = min(top_k, the task's class count)
    index.json                   provenance: manifest + sha256, teacher + sha256 of its
                                 model.safetensors, encoder sha256, T, k, tasks + classes
Each record is run alone (batch 1), so a shard's bytes do not depend on which process made
it: sharded generation over `mlx.launch` ranks (rank r takes shards r, r + n, ...) equals one
process. Shards are atomic; a rerun skips the finished ones.

Student loss (`distill_loss`), after Hinton et al. (2015) and distil-whisper (Gandhi et al.,
2023, "Distil-Whisper", its `run_distillation.py`: KL weight 1.0 beside CE weight 0.8,
temperature 2.0): per task
    a * CE(hard labels) + (1 - a) * T^2 * KL(p_teacher,T || softmax(z_student / T))
with a = 0.8 and T = 2 by default (the T^2 keeps the soft term's gradient scale as T grows).
Frame-level outputs (speaker count per 0.1 s) and multi-label tasks train on hard labels only.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlx.core as mx
import numpy as np

from ..atomic import atomic_output
from ..errors import MasError
from ..weights_io import WEIGHTS_FILE, load_safetensors, safetensors_header, sha256_file
from .features import read_index
from .model import HeadsArgs

log = logging.getLogger("mlx_audio_stack.heads")
INDEX = "index.json"
SOFT_VERSION = 1
ALPHA = 0.8  # distil-whisper's CE weight (its KL weight is 1.0; here 1 - a)
TEMPERATURE = 2.0  # distil-whisper's default


class DistillError(MasError):
    """Soft labels cannot be made or used (mismatched teacher, manifest, settings)."""


def soft_targets(logits: np.ndarray, temperature: float, top_k: int) -> tuple:
    """(index (N, k) int32, prob (N, k) float32, rest (N,) float32) of softmax(logits / T),
    computed in float64; classes sorted by falling probability (ties: lower index first)."""
    z = np.asarray(logits, np.float64) / temperature
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    k = min(top_k, p.shape[-1])
    idx = np.argsort(-p, axis=-1, kind="stable")[:, :k]
    top = np.take_along_axis(p, idx, -1)
    rest = np.clip(1.0 - top.sum(-1), 0.0, 1.0)
    return idx.astype(np.int32), top.astype(np.float32), rest.astype(np.float32)


def dense_probs(index: np.ndarray, prob: np.ndarray, rest: np.ndarray, n_classes: int):
    """(N, K) float32 probabilities: the top k as stored, the rest mass shared evenly by the
    other K - k classes (rows sum to 1)."""
    n, k = index.shape
    out = np.zeros((n, n_classes), np.float64)
    if n_classes > k:
        out += (rest.astype(np.float64) / (n_classes - k))[:, None]
    np.put_along_axis(out, index.astype(np.int64), prob.astype(np.float64), -1)
    return (out / out.sum(-1, keepdims=True)).astype(np.float32)


def _soft_tasks(args: HeadsArgs) -> list:
    return [s for s in args.tasks if not s.multi_label]


def _shard_done(path: Path, tasks: list[str], n: int, k: int) -> bool:
    if not path.is_file():
        return False
    try:
        h = safetensors_header(path, DistillError)
    except DistillError:
        return False  # a damaged shard is made again
    want = {f"{t}.{x}" for t in tasks for x in ("index", "prob", "rest")}
    return set(h) == want and all(h[f"{t}.index"]["shape"][:1] == [n] for t in tasks)
    # (the settings themselves are checked against index.json before any shard is trusted)


def _teacher_logits(teacher, feats: np.ndarray) -> dict[str, np.ndarray]:
    out = teacher(mx.array(feats.astype(np.float32))[None])
    return {name: np.array(o["logits"][0]) for name, o in out.items()}


def distill_labels(
    teacher: str | Path,
    manifest: str | Path,
    out: str | Path,
    temperature: float = TEMPERATURE,
    top_k: int = 5,
    model: str | Path | None = None,
    features: str | Path | None = None,
    shard_size: int = 64,
    skip_qa: str | None = None,
    progress: bool = False,
    group=None,
) -> dict:
    """Write (or resume) the soft labels of `manifest` from the `teacher` heads folder into
    `out`; returns the index. The QA gate runs first, for every teacher task that the
    manifest labels (soft labels are made for those). Encoder
    features come from `features` (a cache of `manifest` with the teacher's encoder) or are
    computed with the Whisper weights `model` (default: weights/<the teacher's encoder>).
    Under `mlx.launch` each process takes every n-th shard; rank 0 writes the index."""
    from tqdm import tqdm

    from ..data.gate import require_qa
    from ..data.manifest import read_manifest
    from ..paths import weights_dir
    from .features import _record_audio, encode_layers, open_cache
    from .load import load_heads
    from .parallel import barrier, default_group, rank_of

    if not temperature > 0 or top_k < 1 or shard_size < 1:
        raise DistillError("temperature must be > 0, top_k and shard_size >= 1")
    teacher = Path(teacher)
    t_model = load_heads(teacher)
    m = read_manifest(manifest)
    # the tasks the manifest labels (a gender manifest is not checked for speaker count)
    labelled = {t for r in m.records for t in (r.get("labels") or {})}
    tasks = [s.name for s in _soft_tasks(t_model.args) if s.name in labelled]
    if not tasks:
        raise DistillError(
            f"{manifest}: labels none of the teacher's multi-class tasks "
            f"{[s.name for s in _soft_tasks(t_model.args)]}"
        )
    qa = {t: require_qa(manifest, t, override=skip_qa)["qa"] for t in tasks}
    if skip_qa:
        log.warning("QA GATE SKIPPED for %s (soft labels): %s", manifest, skip_qa)
    group = default_group() if group is None else group
    rank, world = rank_of(group)
    enc = t_model.config.get("encoder") or {}
    cache, mdir = None, None
    if features is not None:
        cache = open_cache(features)
        if cache.index.get("manifest_sha256") != m.content_hash:
            raise DistillError(f"{features}: features of another manifest than {manifest}")
        got = cache.index.get("weights_sha256")
    else:
        mdir = Path(model) if model else weights_dir() / str(enc.get("model"))
        if not (mdir / WEIGHTS_FILE).is_file():
            raise DistillError(f"{mdir}: no {WEIGHTS_FILE}; give the teacher's encoder --model")
        got = sha256_file(mdir / WEIGHTS_FILE)
    if enc.get("weights_sha256") and got != enc["weights_sha256"]:
        raise DistillError(
            f"{features or mdir}: encoder weights sha256 {str(got)[:12]}, the teacher was "
            f"trained on {enc['weights_sha256'][:12]} ({enc.get('model')})"
        )
    k = top_k  # per task min(k, its class count): soft_targets caps it
    out = Path(out)
    want = {
        "version": SOFT_VERSION,
        "manifest": str(Path(manifest).resolve()),
        "manifest_sha256": m.content_hash,
        "teacher": str(teacher.resolve()),
        "teacher_sha256": sha256_file(teacher / WEIGHTS_FILE),
        "encoder": enc.get("model"),
        "encoder_sha256": got,
        "temperature": float(temperature),
        "top_k": k,
        "tasks": {t: t_model.args.task(t).classes for t in tasks},
        "shard_size": shard_size,
        "n_records": len(m.records),
    }
    if (out / INDEX).is_file():
        old = json.loads((out / INDEX).read_text())
        diff = [x for x in want if x not in ("manifest", "teacher") and old.get(x) != want[x]]
        if diff:
            raise DistillError(
                f"{out}: holds soft labels with {diff[0]} = {old.get(diff[0])!r}, this run has "
                f"{want[diff[0]]!r}; give another --out folder (or delete that one)"
            )
    out.mkdir(parents=True, exist_ok=True)
    chunks = [m.records[i : i + shard_size] for i in range(0, len(m.records), shard_size)]
    shards = [{"file": f"shard-{j:05d}.safetensors", "ids": [str(r["id"]) for r in c]}
              for j, c in enumerate(chunks)]  # fmt: skip
    feats_all = cache.load_all() if cache is not None else None
    encoder = None
    mine = list(range(rank, len(chunks), world))
    bar = tqdm(total=sum(len(chunks[j]) for j in mine), desc="soft labels", unit="rec",
               disable=not progress)  # fmt: skip
    for j in mine:
        recs, path = chunks[j], out / shards[j]["file"]
        if _shard_done(path, tasks, len(recs), k):
            bar.update(len(recs))
            continue
        logits: dict[str, list] = {t: [] for t in tasks}
        for r in recs:
            if feats_all is not None:
                f = feats_all.get(str(r["id"]))
                if f is None:
                    raise DistillError(f"{features}: no features for record {r['id']!r}")
            else:
                if encoder is None:
                    from ..models.whisper.load import load_model

                    encoder = load_model(mdir, mx.float32)
                f = encode_layers(encoder, _record_audio(m, r), t_model.args.pool)
            for t, z in _teacher_logits(t_model, f).items():
                if t in logits:
                    logits[t].append(z)
            bar.update(1)
        arrays = {}
        for t in tasks:
            idx, prob, rest = soft_targets(np.stack(logits[t]), temperature, k)
            arrays.update({f"{t}.index": mx.array(idx), f"{t}.prob": mx.array(prob),
                           f"{t}.rest": mx.array(rest)})  # fmt: skip
        with atomic_output(path) as tmp:
            tmp_st = tmp.with_name(tmp.name + ".safetensors")  # MLX appends the suffix
            mx.save_safetensors(str(tmp_st), arrays, metadata={"format": "mlx"})
            os.replace(tmp_st, tmp)
    bar.close()
    barrier(group)
    index = {**want, "qa": qa, "complete": True, "shards": shards}
    if rank == 0:
        missing = [s["file"] for s, c in zip(shards, chunks)
                   if not _shard_done(out / s["file"], tasks, len(c), k)]  # fmt: skip
        if missing:
            raise DistillError(f"{out}: shards {missing[:3]} were not written")
        with atomic_output(out / INDEX) as tmp:
            tmp.write_text(json.dumps(index, indent=1) + "\n", encoding="utf-8")
    barrier(group)
    return index


def load_soft_labels(path: str | Path) -> tuple[dict, dict[str, dict[str, np.ndarray]]]:
    """(index, {record id: {task: (K,) teacher probabilities at T}}) of a finished folder."""
    path = Path(path)
    index = read_index(path, INDEX, DistillError, "soft-label folder")
    if index.get("version") != SOFT_VERSION or not index.get("complete"):
        raise DistillError(f"{path}: unfinished or unknown soft labels; run `mas distill labels`")
    soft: dict[str, dict[str, np.ndarray]] = {}
    for s in index["shards"]:
        w = {a: np.array(b) for a, b in load_safetensors(path / s["file"], DistillError).items()}
        for t, classes in index["tasks"].items():
            p = dense_probs(w[f"{t}.index"], w[f"{t}.prob"], w[f"{t}.rest"], len(classes))
            for rid, row in zip(s["ids"], p):
                soft.setdefault(rid, {})[t] = row
    return index, soft


def distill_loss(
    args: HeadsArgs, cfg: Any, alpha: float = ALPHA, temperature: float = TEMPERATURE
) -> Callable:
    """loss(model, batch) -> (total, {task: loss}) for `fit`: per task
    alpha * hard loss + (1 - alpha) * T^2 * KL(teacher || softmax(student / T)), the KL
    averaged over the batch's records that carry soft labels (`soft_<task>` in the batch)."""
    from .train import hard_task_losses

    def loss(model, batch: dict) -> tuple[mx.array, dict]:
        out = model(batch["x"], batch["mask"])
        parts = hard_task_losses(args, cfg, out, batch)
        total = mx.array(0.0)
        for spec in args.tasks:
            task_loss = parts[spec.name]
            if f"soft_{spec.name}" in batch:
                p = batch[f"soft_{spec.name}"]  # (B, K)
                has = batch[f"hassoft_{spec.name}"].astype(mx.float32)
                logq = out[spec.name]["logits"] / temperature
                logq = logq - mx.logsumexp(logq, axis=-1, keepdims=True)
                logp = mx.log(mx.maximum(p, 1e-30))
                kl = (p * (logp - logq)).sum(-1)  # (B,)
                den = batch.get(f"sden_{spec.name}", mx.maximum(has.sum(), 1.0))
                soft = (kl * has).sum() / den
                task_loss = alpha * task_loss + (1 - alpha) * temperature**2 * soft
            parts[spec.name] = task_loss
            total = total + cfg.task_weights.get(spec.name, 1.0) * task_loss
        return total, parts

    return loss


def distill_train(
    soft: str | Path,
    model_dir: str | Path,
    out: str | Path,
    features: str | Path | None = None,
    cfg: Any = None,
    alpha: float = ALPHA,
    temperature: float | None = None,
    skip_qa: str | None = None,
    resume: bool = True,
    progress: bool = False,
    group=None,
) -> dict:
    """Train student heads on the encoder in `model_dir` from the soft-label folder `soft`
    (its manifest, gated first for every task) with `distill_loss`, through `train_heads`
    (same loop, checkpoints, report). `temperature` defaults to the labels' T."""
    from ..data.gate import require_qa
    from ..data.manifest import read_manifest
    from .train import TrainConfig, train_heads

    if not 0.0 <= alpha <= 1.0:
        raise DistillError(f"alpha must be in [0, 1], got {alpha}")
    soft = Path(soft)
    try:
        index = json.loads((soft / INDEX).read_text(encoding="utf-8"))
        manifest, tasks = index["manifest"], list(index["tasks"])
    except FileNotFoundError:
        raise DistillError(f"{soft}: no {INDEX}; not a soft-label folder") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DistillError(f"{soft / INDEX}: unreadable ({exc})") from None
    for t in tasks:  # the gate first, before the labels are read
        require_qa(manifest, t, override=skip_qa)
    index, labels = load_soft_labels(soft)
    if read_manifest(manifest).content_hash != index["manifest_sha256"]:
        raise DistillError(f"{soft}: soft labels of an earlier version of {manifest}")
    t = float(index["temperature"] if temperature is None else temperature)
    cfg = cfg or TrainConfig()
    prov = {"distillation": {k: index[k] for k in ("teacher", "teacher_sha256", "encoder",
            "temperature", "top_k", "manifest_sha256")} | {"alpha": alpha, "loss_temperature": t,
            "soft_labels": str(soft.resolve())}}  # fmt: skip

    def loss_fn(model, batch):
        return distill_loss(model.args, cfg, alpha, t)(model, batch)

    return train_heads(manifest, tasks, model_dir, out, features=features, cfg=cfg,
                       skip_qa=skip_qa, resume=resume, progress=progress, loss_fn=loss_fn,
                       soft=labels, extra_config=prov, group=group)  # fmt: skip
