"""Training of the Whisper heads in MLX on cached encoder features, behind the QA gate.

`train_heads` calls `require_qa(manifest, task)` for every task before anything else. Then:
AdamW, linear warm-up + cosine decay, gradient clipping (global norm), per-task loss weights,
the task-balanced sampler (`dataset.balanced_batches`), early stopping on the validation
split's mean score (macro-F1 of multi-class tasks, mAP of multi-label ones), a checkpoint at
every epoch end (atomic), resumed automatically: a killed run, resumed, ends with the same
weights as an uninterrupted one (batches depend only on (seed, epoch); the checkpoint holds the
parameters, the optimizer state, the best weights and the history).

Hooks for what comes next: `loss_fn(model, batch) -> (loss, parts)` replaces the hard-label
loss (distillation), `grad_hook(grads) -> grads` runs before clipping (data-parallel training:
`mlx.nn.average_gradients`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
from mlx.utils import tree_flatten, tree_unflatten

from ..atomic import atomic_output
from ..weights_io import WEIGHTS_FILE, load_safetensors, sha256_file
from .dataset import (
    HeadsDataError,
    balanced_batches,
    build_examples,
    collate,
    has_label,
    withheld_label,
)
from .metrics import classification_metrics, multilabel_metrics
from .model import HeadsArgs, TaskSpec, WhisperHeads

log = logging.getLogger("mlx_audio_stack.heads")
CHECKPOINT_VERSION = 1


@dataclass
class TrainConfig:
    seed: int = 0
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 20
    max_epochs: int = 30
    patience: int = 6
    clip_norm: float = 1.0
    hidden: int = 128
    task_weights: dict[str, float] = field(default_factory=dict)  # default 1 per task
    frame_weight: float = 1.0  # weight of a frame-level task's frame loss beside its segment loss


def hard_label_loss(args: HeadsArgs, cfg: TrainConfig) -> Callable:
    """loss(model, batch) -> (weighted sum over tasks, {task: loss}): cross-entropy
    (multi-class), binary cross-entropy (multi-label), over the records labelled for the
    task; frame-level tasks add the frame cross-entropy over labelled frames."""

    def loss(model: WhisperHeads, batch: dict) -> tuple[mx.array, dict]:
        parts = hard_task_losses(args, cfg, model(batch["x"], batch["mask"]), batch)
        total = mx.array(0.0)
        for name, task_loss in parts.items():
            total = total + cfg.task_weights.get(name, 1.0) * task_loss
        return total, parts

    return loss


def hard_task_losses(args: HeadsArgs, cfg: TrainConfig, out: dict, batch: dict) -> dict:
    """{task: hard-label loss} of the model outputs `out` on `batch` (see hard_label_loss)."""
    parts = {}
    for spec in args.tasks:
        o, y = out[spec.name], batch[f"y_{spec.name}"]
        has = batch[f"has_{spec.name}"].astype(mx.float32)
        if spec.multi_label:
            per = nn.losses.binary_cross_entropy(o["logits"], y, reduction="none").mean(-1)
        else:
            per = nn.losses.cross_entropy(o["logits"], y)
        den = batch.get(f"den_{spec.name}", mx.maximum(has.sum(), 1.0))
        task_loss = (per * has).sum() / den
        if spec.frame_level and f"fy_{spec.name}" in batch:
            fy = batch[f"fy_{spec.name}"]
            valid = (fy >= 0).astype(mx.float32)
            ce = nn.losses.cross_entropy(o["frame_logits"], mx.maximum(fy, 0))  # (B, T)
            fden = batch.get(f"fden_{spec.name}", mx.maximum(valid.sum(), 1.0))
            task_loss = task_loss + cfg.frame_weight * (ce * valid).sum() / fden
        parts[spec.name] = task_loss
    return parts


def predict_examples(model: WhisperHeads, examples, args: HeadsArgs, batch: int = 32) -> dict:
    """{task: {"probs": (N, K), ["frame_probs": list of (T_i, K)]}} for `examples`."""
    res: dict = {s.name: {"probs": [], "frame_probs": []} for s in args.tasks}
    for s in range(0, len(examples), batch):
        chunk = examples[s : s + batch]
        b = collate(chunk, args)
        p = model.predict(mx.array(b["x"]), mx.array(b["mask"]))
        for spec in args.tasks:
            res[spec.name]["probs"].append(np.array(p[spec.name]["probs"]))
            if spec.frame_level:
                fp = np.array(p[spec.name]["frame_probs"])
                for i, e in enumerate(chunk):
                    res[spec.name]["frame_probs"].append(fp[i, : e.feats.shape[1]])
    return {k: {"probs": np.concatenate(v["probs"]), "frame_probs": v["frame_probs"]}
            for k, v in res.items()}  # fmt: skip


def evaluate(model: WhisperHeads, examples, args: HeadsArgs) -> dict:
    """Per-task metrics on `examples` (records without the task's label are left out)."""
    if not examples:
        return {}
    pred = predict_examples(model, examples, args)
    out = {}
    for spec in args.tasks:
        keep = [i for i, e in enumerate(examples) if has_label(e, spec)]
        if not keep:
            continue
        probs = pred[spec.name]["probs"][keep]
        if spec.multi_label:
            truth = np.stack([examples[i].labels[spec.name] for i in keep])
            m = multilabel_metrics(truth, probs)
            m["score"] = m["mAP"]
        else:
            y = np.array([examples[i].labels[spec.name] for i in keep])
            m = classification_metrics(y, probs)
            m["score"] = m["macro_f1"]
        if spec.frame_level:
            ys, ps = [], []
            for i, e in enumerate(examples):
                if spec.name in e.frames:
                    fl = e.frames[spec.name]
                    ok = fl >= 0
                    ys.append(fl[ok])
                    ps.append(pred[spec.name]["frame_probs"][i][ok])
            if ys:
                m["frame"] = classification_metrics(np.concatenate(ys), np.concatenate(ps))
        out[spec.name] = m
    return out


def _score(metrics: dict) -> float:
    return float(np.mean([m["score"] for m in metrics.values()])) if metrics else 0.0


def _params_np(tree) -> dict[str, mx.array]:
    return {k: mx.array(np.array(v)) for k, v in tree_flatten(tree)}


def _save_checkpoint(path: Path, model, opt, best, state: dict) -> None:
    with atomic_output(path, directory=True) as tmp:
        mx.save_safetensors(str(tmp / "params.safetensors"), dict(tree_flatten(model.parameters())))
        mx.save_safetensors(str(tmp / "best.safetensors"), best)
        opt_state = {k: v for k, v in tree_flatten(opt.state) if k not in ("step", "learning_rate")}
        mx.save_safetensors(str(tmp / "optimizer.safetensors"), opt_state)
        state = {**state, "opt_step": int(opt.state["step"].item())}
        (tmp / "state.json").write_text(json.dumps(state, indent=1) + "\n")


def _load_checkpoint(path: Path, model, opt) -> tuple[dict, dict]:
    state = json.loads((path / "state.json").read_text())
    model.update(tree_unflatten(list(load_safetensors(path / "params.safetensors").items())))
    st = tree_unflatten(list(load_safetensors(path / "optimizer.safetensors").items()))
    st["step"] = mx.array(state["opt_step"], mx.uint64)
    opt.state = st
    best = dict(load_safetensors(path / "best.safetensors"))
    return state, best


def fit(
    examples: list,
    args: HeadsArgs,
    cfg: TrainConfig,
    checkpoint: Path | None = None,
    fingerprint: str = "",
    loss_fn: Callable | None = None,
    grad_hook: Callable | None = None,
    progress: bool = False,
    group=None,
) -> tuple[WhisperHeads, dict]:
    """Train on the `train` examples, early-stop on `valid`; returns the best model (eval
    mode) and {"history", "best_epoch", "best_valid_score", "resumed_from"}.

    `group` (an `mx.distributed` group of n > 1 processes): data-parallel. Every process
    draws the same global batches and takes records r, r + n, ... of each; the loss divides
    by the global batch's label counts / n and the gradients are averaged
    (`nn.average_gradients`), so each step is the one-process step of the same global batch
    up to float summation order. Only rank 0 writes the checkpoint."""
    from tqdm import tqdm

    train = [e for e in examples if e.split == "train"]
    valid = [e for e in examples if e.split == "valid"] or train
    if not train:
        raise HeadsDataError("no records in the train split")
    world = group.size() if group is not None else 1
    rank = group.rank() if group is not None else 0
    if world > 1 and cfg.batch_size < world:
        raise HeadsDataError(f"batch size {cfg.batch_size} < {world} processes")
    mx.random.seed(cfg.seed)
    model = WhisperHeads(args)
    mx.eval(model.parameters())
    steps = len(balanced_batches(train, args, cfg.batch_size, cfg.seed, 0))
    warm = max(1, min(cfg.warmup_steps, steps * cfg.max_epochs // 2))
    sched = optim.join_schedules(
        [
            optim.linear_schedule(cfg.lr * 0.01, cfg.lr, warm),
            optim.cosine_decay(cfg.lr, max(1, steps * cfg.max_epochs - warm), cfg.lr * 0.01),
        ],
        [warm],
    )
    opt = optim.AdamW(learning_rate=sched, weight_decay=cfg.weight_decay)
    loss_fn = loss_fn or hard_label_loss(args, cfg)
    best = _params_np(model.parameters())
    state = {"version": CHECKPOINT_VERSION, "fingerprint": fingerprint, "epoch": 0,
             "best_score": -1.0, "best_epoch": 0, "bad": 0, "history": []}  # fmt: skip
    resumed_from = None
    if checkpoint is not None and (checkpoint / "state.json").is_file():
        saved = json.loads((checkpoint / "state.json").read_text())
        if saved.get("fingerprint") != fingerprint or saved.get("version") != CHECKPOINT_VERSION:
            raise HeadsDataError(
                f"{checkpoint}: a checkpoint of other settings or data; delete it or pass "
                "--no-resume"
            )
        state, best = _load_checkpoint(checkpoint, model, opt)
        resumed_from = state["epoch"]
        log.info("resuming from %s after epoch %d", checkpoint, state["epoch"])
    grad_fn = nn.value_and_grad(model, loss_fn)
    while state["epoch"] < cfg.max_epochs and state["bad"] < cfg.patience:
        epoch = state["epoch"]
        model.train()
        batches = balanced_batches(train, args, cfg.batch_size, cfg.seed, epoch)
        losses = []
        bar = tqdm(batches, desc=f"heads epoch {epoch + 1}", disable=not progress, leave=False)
        for idx in bar:
            mine = idx[rank::world]
            b = {k: mx.array(v) for k, v in collate([train[i] for i in mine], args).items()}
            if world > 1:
                b.update(_global_dens([train[i] for i in idx], args, world))
            (loss, _parts), grads = grad_fn(model, b)
            if world > 1:
                grads = nn.average_gradients(grads, group=group)
                loss = mx.distributed.all_sum(loss, group=group) / world
            if grad_hook is not None:
                grads = grad_hook(grads)
            grads, _norm = optim.clip_grad_norm(grads, cfg.clip_norm)
            opt.update(model, grads)
            mx.eval(model.parameters(), opt.state, loss)
            losses.append(loss.item())
        model.eval()
        vm = evaluate(model, valid, args)
        score = _score(vm)
        state["history"].append(
            {
                "epoch": epoch + 1,
                "train_loss": float(np.mean(losses)),
                "valid_score": score,
                "valid": {
                    t: {k: v for k, v in m.items() if k != "confusion" and k != "frame"}
                    for t, m in vm.items()
                },  # fmt: skip
            }
        )
        if score > state["best_score"]:
            state.update(best_score=score, best_epoch=epoch + 1, bad=0)
            best = _params_np(model.parameters())
        else:
            state["bad"] += 1
        state["epoch"] = epoch + 1
        if progress:
            tqdm.write(f"epoch {epoch + 1}: loss {np.mean(losses):.4f}, valid score {score:.4f}")
        if checkpoint is not None and rank == 0:
            _save_checkpoint(checkpoint, model, opt, best, state)
    model.update(tree_unflatten(list(best.items())))
    model.eval()
    mx.eval(model.parameters())
    return model, {
        "history": state["history"],
        "best_epoch": state["best_epoch"],
        "best_valid_score": state["best_score"],
        "resumed_from": resumed_from,
    }


def _global_dens(batch: list, args: HeadsArgs, world: int) -> dict[str, mx.array]:
    """Loss denominators of the global batch / world (see `fit`'s `group`)."""
    out = {}
    for spec in args.tasks:
        n = sum(has_label(e, spec) for e in batch)
        out[f"den_{spec.name}"] = mx.array(max(n, 1) / world, mx.float32)
        if spec.frame_level:
            nf = sum(int((e.frames[spec.name] >= 0).sum()) for e in batch if spec.name in e.frames)
            out[f"fden_{spec.name}"] = mx.array(max(nf, 1) / world, mx.float32)
        ns = sum(spec.name in e.soft for e in batch)
        out[f"sden_{spec.name}"] = mx.array(max(ns, 1) / world, mx.float32)
    return out


def _fingerprint(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _labelled_tasks(records: list[dict], tasks: list[str]) -> list[str]:
    return [t for t in tasks if any(t in (r.get("labels") or {}) for r in records)]


def _features_for(manifest, m, model_dir: Path, features, work: Path, wsha: str, progress):
    from .features import cache_features, open_cache

    if features is None:
        cache = cache_features(
            manifest, model_dir, work / f"features-{m.name}-{m.content_hash[:12]}",
            progress=progress,
        )  # fmt: skip
    else:
        cache = open_cache(features)
    ix = cache.index
    if ix.get("manifest_sha256") != m.content_hash:
        got = str(ix.get("manifest_sha256"))[:12]
        raise HeadsDataError(
            f"{cache.path}: features of another manifest (sha256 {got}, {manifest} is "
            f"{m.content_hash[:12]})"
        )
    if ix.get("weights_sha256") != wsha:
        raise HeadsDataError(f"{cache.path}: features of other encoder weights than {model_dir}")
    if not ix.get("complete"):
        raise HeadsDataError(f"{cache.path}: unfinished cache; run `mas features cache` again")
    return cache


def train_heads(
    manifest: str | Path | list,
    tasks: list[str],
    model_dir: str | Path,
    out: str | Path,
    features: str | Path | list | None = None,
    cfg: TrainConfig | None = None,
    skip_qa: str | None = None,
    resume: bool = True,
    progress: bool = False,
    loss_fn: Callable | None = None,
    grad_hook: Callable | None = None,
    report: bool = True,
    soft: dict | None = None,
    extra_config: dict | None = None,
    group=None,
    withhold: list | tuple | None = None,
) -> dict:
    """Train heads for `tasks` from the encoder in `model_dir`; writes the weights folder
    `out` (+ report.md, metrics.json, plots).

    `manifest`: one manifest, gated for every task; or a list, each gated for the tasks it
    labels (a gender manifest and a speaker-count manifest, say: the QA suite wants every
    record of a manifest labelled for its task). The QA gate runs first, before anything is
    computed. Features come from `features` (a cache per manifest, `mas features cache`) or
    are cached into `<out>.work/`; the checkpoint lives in `<out>.work/checkpoint`.
    `soft` ({record id: {task: teacher probabilities}}) goes into the batches for a
    distillation `loss_fn`; `extra_config` is stored in config.json (both enter the checkpoint
    fingerprint). `withhold` (one bool per manifest): True keeps that manifest's own labels
    (segment and frame) from training, so its records train on `soft` alone (a distillation
    transfer set: audio the teacher labelled); the QA gate still checks it. `group`:
    data-parallel over an `mx.distributed` group (see `fit`; default: the group
    `mlx.launch` set up, if any); rank 0 builds missing caches and writes `out`.
    Returns the training summary."""
    from ..data.gate import require_qa
    from ..data.manifest import read_manifest

    cfg = cfg or TrainConfig()
    if not tasks:
        raise HeadsDataError("no tasks given")
    manifests = [Path(p) for p in (manifest if isinstance(manifest, list | tuple) else [manifest])]
    feats_in = features if isinstance(features, list | tuple) else [features] * len(manifests)
    if len(feats_in) != len(manifests):
        raise HeadsDataError(f"{len(feats_in)} feature caches for {len(manifests)} manifests")
    qa, parsed = {}, []
    for p in manifests:  # the gate first: nothing is computed for unchecked data
        m = read_manifest(p)
        gated = tasks if len(manifests) == 1 else _labelled_tasks(m.records, tasks)
        if not gated:
            raise HeadsDataError(f"{p}: labels none of the tasks {tasks}")
        for t in gated:
            qa[f"{m.name}:{t}" if len(manifests) > 1 else t] = require_qa(p, t, override=skip_qa)[
                "qa"
            ]
        parsed.append(m)
    missing = [t for t in tasks if not any(t in k.split(":")[-1:] for k in qa)]
    if missing:
        raise HeadsDataError(f"no manifest labels the tasks {missing}")
    if skip_qa:
        log.warning("QA GATE SKIPPED for %s (tasks %s): %s", manifests, ",".join(tasks), skip_qa)

    from .parallel import barrier, default_group

    group = default_group() if group is None else group
    rank = group.rank() if group is not None else 0
    out, model_dir = Path(out), Path(model_dir)
    work = out.with_name(out.name + ".work")
    wsha = sha256_file(model_dir / WEIGHTS_FILE)
    if rank == 0:  # one process builds a missing cache; the others then read it
        caches = [_features_for(p, m, model_dir, f, work, wsha, progress)
                  for p, m, f in zip(manifests, parsed, feats_in)]  # fmt: skip
    barrier(group)
    if rank != 0:
        caches = [_features_for(p, m, model_dir, f, work, wsha, False)
                  for p, m, f in zip(manifests, parsed, feats_in)]  # fmt: skip
    ix = caches[0].index
    for c in caches[1:]:
        if c.index["pool"] != ix["pool"]:
            raise HeadsDataError(
                f"{c.path}: pool {c.index['pool']}, {caches[0].path}: {ix['pool']}"
            )
    specs = [TaskSpec.from_taxonomy(t) for t in tasks]
    args = HeadsArgs(ix["n_layers"], ix["n_state"], cfg.hidden, ix["pool"], specs)
    hide = list(withhold) if withhold is not None else [False] * len(manifests)
    if len(hide) != len(manifests):
        raise HeadsDataError(f"{len(hide)} withhold flags for {len(manifests)} manifests")
    examples = []
    for m, c, h in zip(parsed, caches, hide):
        made = build_examples(m.records, c.load_all(), args)
        if h:
            if any(e.split != "train" for e in made):
                raise HeadsDataError(f"{m.path}: a transfer set holds train records only")
            for e in made:
                e.labels = {s.name: withheld_label(s) for s in args.tasks}
                e.frames = {}
        examples += made
    for e in examples if soft else ():
        e.soft = soft.get(e.rid, {})
    ckpt = work / "checkpoint"
    if not resume and ckpt.exists() and rank == 0:
        shutil.rmtree(ckpt)
    barrier(group)
    fp = _fingerprint(asdict(cfg), args.to_dict(), [m.content_hash for m in parsed], wsha,
                      extra_config, *([hide] if any(hide) else []))  # fmt: skip
    model, summary = fit(
        examples, args, cfg, ckpt, fp, loss_fn, grad_hook, progress and rank == 0, group
    )
    metrics = {
        split: evaluate(model, [e for e in examples if e.split == split], args)
        for split in ("valid", "test")
    }
    summary.update(metrics=metrics, config=asdict(cfg), qa=qa)
    encoder = {k: ix[k] for k in ("model", "weights_sha256", "n_mels", "n_layers", "n_state")}
    extra = {
        "encoder": encoder,
        "qa": qa,
        "training": {"config": asdict(cfg),
                     "manifests": [str(p.resolve()) for p in manifests],
                     "manifest_sha256": [m.content_hash for m in parsed],
                     **({"labels_withheld": [str(p.resolve()) for p, h in zip(manifests, hide)
                                             if h]} if any(hide) else {}),
                     "best_epoch": summary["best_epoch"],
                     "processes": group.size() if group is not None else 1},
        **(extra_config or {}),
    }  # fmt: skip
    from .load import save_heads
    from .report import write_report

    if rank == 0:
        names = ", ".join(str(p) for p in manifests)
        files = write_report(work / "report", summary, args, names, plots=report)
        save_heads(model, out, extra, extra_files=files)
    barrier(group)
    return summary
