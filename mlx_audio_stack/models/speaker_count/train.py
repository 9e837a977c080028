"""Training of the speaker counter in MLX on a QA-passed mixtures manifest.

AdamW with linear warm-up and cosine decay, fixed seeds, class-weighted cross-entropy over
0.1 s frames, early stopping on the held-out validation split's balanced accuracy (mean per-class
recall). The whole 6 s clip is one sequence, padded exactly as `SpeakerCountDetector.count`
pads a file, so training sees what inference sees.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
from mlx.utils import tree_map

from .detector import SpeakerCountDetector, audio_tokens
from .model import ModelArgs, SpeakerCounter


@dataclass
class TrainConfig:
    seed: int = 0
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-2
    max_epochs: int = 12
    patience: int = 4
    level_jitter: float = 0.3  # +-3 dB on log10 features: level robustness
    freq_mask: int = 0  # SpecAugment: mask up to this many mel bands per clip (0: off)
    tilt: float = 0.0  # random spectral tilt, log10 units across the band range (channel)


def load_split(manifest, split: str, args: ModelArgs, progress: bool = True):
    """(tokens (N, F, fpt, m), labels (N, F) int32) of one split, from the audio files."""
    import soundfile as sf
    from tqdm import tqdm

    recs = [r for r in manifest.records if r["split"] == split]
    toks, labs = [], []
    for r in tqdm(recs, desc=f"features {split}", disable=not progress):
        x, sr = sf.read(manifest.audio_file(r), dtype="float32")
        lab = np.array([int(c) for c in r["extra"]["frame_labels"]], dtype=np.int32)
        t = audio_tokens(x, args)
        if t.shape[0] != lab.size:
            raise ValueError(f"{r['id']}: {t.shape[0]} frames of audio, {lab.size} labels")
        toks.append(t)
        labs.append(lab)
    return np.stack(toks), np.stack(labs)


def predict(det: SpeakerCountDetector, tokens: np.ndarray, batch: int = 64) -> np.ndarray:
    """(N, F, 4) probabilities of clips' tokens, padded as `count` pads a file."""
    a = det.args
    out = []
    for s in range(0, tokens.shape[0], batch):
        t = tokens[s : s + batch]
        pad_l = np.broadcast_to(det._silence(det.lead), (t.shape[0], det.lead, *t.shape[2:]))
        pad_r = np.broadcast_to(det._silence(a.lookahead), (t.shape[0], a.lookahead, *t.shape[2:]))
        seq = mx.array(np.concatenate([pad_l, t, pad_r], axis=1))
        out.append(np.array(mx.softmax(det.model(seq), axis=-1)))
    return np.concatenate(out)


def balanced_accuracy(pred: np.ndarray, lab: np.ndarray, k: int = 4) -> float:
    rec = [np.mean(pred[lab == c] == c) for c in range(k) if np.any(lab == c)]
    return float(np.mean(rec))


def overlap_prf(p_overlap: np.ndarray, lab: np.ndarray, thr: float) -> tuple[float, float, float]:
    """Precision, recall, F1 of 'two or more speakers' frames at threshold `thr`."""
    hyp, ref = p_overlap >= thr, lab >= 2
    tp = float(np.sum(hyp & ref))
    p = tp / max(1.0, float(np.sum(hyp)))
    r = tp / max(1.0, float(np.sum(ref)))
    return p, r, 2 * p * r / max(1e-9, p + r)


def train(
    args: ModelArgs,
    cfg: TrainConfig,
    train_data: tuple[np.ndarray, np.ndarray],
    valid_data: tuple[np.ndarray, np.ndarray],
    progress: bool = True,
) -> tuple[SpeakerCounter, dict]:
    """Train from scratch; returns the best-on-validation model (eval mode) and a history."""
    from tqdm import tqdm

    mx.random.seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    xt, yt = train_data
    model = SpeakerCounter(args)
    feats = xt.reshape(-1, args.n_mels)
    feat_mean = feats.mean(0)
    model.feature_mean = mx.array(feat_mean)
    model.feature_std = mx.array(feats.std(0) + 1e-3)
    det = SpeakerCountDetector(model)
    freq = np.bincount(yt.ravel(), minlength=args.num_classes) / yt.size
    cw = (np.maximum(freq, 1e-3) ** -0.5).astype(np.float32)
    cw = mx.array(cw / np.sum(cw * freq))  # weighted mean over frames stays ~1
    steps_per_epoch = xt.shape[0] // cfg.batch_size
    warm = min(100, steps_per_epoch)
    sched = optim.join_schedules(
        [
            optim.linear_schedule(cfg.lr * 0.01, cfg.lr, warm),
            optim.cosine_decay(cfg.lr, cfg.max_epochs * steps_per_epoch - warm, cfg.lr * 0.05),
        ],
        [warm],
    )
    opt = optim.AdamW(learning_rate=sched, weight_decay=cfg.weight_decay)
    pad_l = det._silence(det.lead)
    pad_r = det._silence(args.lookahead)

    def loss_fn(m, x, y):
        logits = m(x)  # (B, F, C)
        ce = nn.losses.cross_entropy(logits, y)  # (B, F)
        return mx.mean(ce * cw[y])

    state = [model.state, opt.state, mx.random.state]

    @partial(mx.compile, inputs=state, outputs=state)
    def step(x, y):
        loss, grads = nn.value_and_grad(model, loss_fn)(model, x, y)
        opt.update(model, grads)
        return loss

    xv, yv = valid_data
    best, best_params, history, bad = -1.0, None, [], 0
    for epoch in range(cfg.max_epochs):
        model.train()
        order = rng.permutation(xt.shape[0])
        losses = []
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}", disable=not progress)
        for b in bar:
            idx = order[b * cfg.batch_size : (b + 1) * cfg.batch_size]
            t = xt[idx] + rng.uniform(-cfg.level_jitter, cfg.level_jitter, (len(idx), 1, 1, 1))
            if cfg.tilt:
                ramp = np.linspace(-0.5, 0.5, args.n_mels)
                t = t + rng.uniform(-cfg.tilt, cfg.tilt, (len(idx), 1, 1, 1)) * ramp
            if cfg.freq_mask:
                for i in range(len(idx)):
                    w = int(rng.integers(0, cfg.freq_mask + 1))
                    f0 = int(rng.integers(0, args.n_mels - w + 1))
                    t[i, :, :, f0 : f0 + w] = feat_mean[f0 : f0 + w]
            seq = np.concatenate(
                [
                    np.broadcast_to(pad_l, (len(idx), *pad_l.shape)),
                    t.astype(np.float32),
                    np.broadcast_to(pad_r, (len(idx), *pad_r.shape)),
                ],
                axis=1,
            )
            loss = step(mx.array(seq), mx.array(yt[idx]))
            mx.eval(state)
            losses.append(loss.item())
            if b % 10 == 0:
                bar.set_postfix(loss=f"{np.mean(losses[-10:]):.3f}")
        model.eval()
        pv = predict(det, xv)
        bacc = balanced_accuracy(pv.argmax(-1).ravel(), yv.ravel())
        acc = float(np.mean(pv.argmax(-1) == yv))
        p, r, f1 = overlap_prf(pv[..., 2:].sum(-1).ravel(), yv.ravel(), 0.5)
        history.append(
            {
                "epoch": epoch + 1,
                "train_loss": round(float(np.mean(losses)), 4),
                "valid_balanced_acc": round(bacc, 4),
                "valid_acc": round(acc, 4),
                "valid_overlap_f1@0.5": round(f1, 4),
            }
        )
        if progress:
            tqdm.write(str(history[-1]))
        if bacc > best:
            best, bad = bacc, 0
            best_params = tree_map(lambda v: mx.array(np.array(v)), model.parameters())
        else:
            bad += 1
            if bad >= cfg.patience:
                break
    model.update(best_params)
    model.eval()
    mx.eval(model.parameters())
    return model, {
        "history": history,
        "best_valid_balanced_acc": round(best, 4),
        "class_weights": [round(float(c), 4) for c in np.array(cw)],
        "train_frame_distribution": [round(float(f), 4) for f in freq],
    }


def choose_threshold(p_overlap: np.ndarray, lab: np.ndarray) -> float:
    """Overlap threshold chosen on validation: the best F1 (precision and recall weigh the
    same: a false alarm costs a separation run, a miss costs a garbled transcript)."""
    grid = np.round(np.arange(0.2, 0.951, 0.05), 2)
    return float(max(grid, key=lambda t: overlap_prf(p_overlap, lab, t)[2]))
