"""Speaker embeddings from audio: the spkrec-ecapa-voxceleb pipeline
(`EncoderClassifier.encode_batch`: Fbank -> sentence mean norm -> ECAPA_TDNN [-> global
embedding norm]) for any number of variable-length utterances.

Two batch semantics:
- `mode="exact"` (default): each utterance is computed as if it were alone (its own frame
  count, its own peak for the dB floor, masks in every statistic, reflection padding at its own
  end). Batched output equals unbatched output.
- `mode="speechbrain"`: SpeechBrain's batched computation with relative lengths `wav_lens`
  (zero-padded batch, masks from `wav_lens * frames`, convolutions padded at the batch end).
  Short utterances in a batch then differ slightly from their unbatched embedding, as in
  SpeechBrain.

Long inputs: the model pools statistics over the whole utterance, and its memory grows with
the length (about 8.5 MB per second of audio at full size: 1 GB for 2 minutes). A file longer
than LONG_SECONDS (or one `audio.is_long` would stream) is therefore read block by block
(`audio.stream_audio`) and cut into k = ceil(seconds / LONG_SECONDS) equal consecutive windows;
its embedding is the mean of the windows' raw embeddings. Up to LONG_SECONDS the embedding is
the whole-utterance one, as in SpeechBrain.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import mlx.core as mx
import numpy as np

from ..._blas import keep_large_buffers
from ...audio import as_audio, audio_info, is_long, stream_audio, stream_length
from ...errors import AudioError, WeightsError
from .fbank import Fbank, FbankArgs, num_frames, sentence_mean_norm
from .model import ECAPA_TDNN

LONG_SECONDS = 120.0  # longer files are embedded as the mean of equal windows (see above)


@dataclass
class EmbedConfig:
    """What a converted folder's config.json says about the pipeline around the model."""

    sentence_norm: bool = True  # mean_var_norm (sentence, std_norm False in spkrec-ecapa)
    sentence_std: bool = False
    emb_norm_std: bool = False


class SpeakerEncoder:
    """ECAPA-TDNN speaker embedding model with its front end.

    >>> enc = load_model("weights/ecapa-voxceleb")  # models/ecapa/load.py
    >>> e = enc.embed(["a.wav", "b.wav"])          # (2, 192) numpy float32
    """

    name = "ecapa"  # the speaker-embedder interface (mlx_audio_stack/embedders.py)
    threshold = 0.25  # default raw-cosine verification threshold (SpeechBrain's verify_batch)

    def __init__(
        self,
        model: ECAPA_TDNN,
        fbank_args: FbankArgs,
        cfg: EmbedConfig | None = None,
        emb_mean: mx.array | None = None,
        emb_std: mx.array | None = None,
    ):
        keep_large_buffers()
        self.model = model
        self.fbank = Fbank(fbank_args)
        self.cfg = cfg or EmbedConfig()
        self.emb_mean, self.emb_std = emb_mean, emb_std
        self.sample_rate = fbank_args.sample_rate
        # convolutions reflect-pad by up to max_pad frames: a shorter input cannot be computed
        self.min_frames = model.args.max_pad + 1
        self.min_samples = (self.min_frames - 1) * self.fbank.args.hop_samples

    @property
    def dim(self) -> int:
        """Embedding size (lin_neurons); rows of `embed` are not normalised."""
        return self.model.args.lin_neurons

    # --- features ------------------------------------------------------------------------------

    def features(
        self,
        wavs: mx.array,
        n_samples: np.ndarray | None = None,
        wav_lens: np.ndarray | None = None,
    ) -> tuple[mx.array, mx.array | None, np.ndarray]:
        """(B, T) waveforms -> (normalized feats (B, F, n_mels), mask (B, F), frames (B,)).

        `n_samples` (absolute, exact mode) or `wav_lens` (relative, SpeechBrain mode).
        """
        b, t = wavs.shape
        n_fr = int(num_frames(t, self.fbank.args.hop_samples))
        if wav_lens is not None:
            rel = np.asarray(wav_lens, np.float32)
            frames = np.full(b, n_fr)
            # SpeechBrain: InputNormalization masks `arange < rel * F - 1e-6`, the model's
            # SE/pooling masks `arange < rel * F` (both in float32)
            ar = np.arange(n_fr, dtype=np.float32)[None]
            norm_mask = mx.array(ar < (rel * np.float32(n_fr) - np.float32(1e-6))[:, None])
            mask = mx.array(ar < (rel * np.float32(n_fr))[:, None])
            feats = self.fbank(wavs)
        else:
            n = np.full(b, t) if n_samples is None else np.asarray(n_samples)
            frames = num_frames(n, self.fbank.args.hop_samples)
            if bool(np.all(frames == n_fr)):  # no padding: no masks needed
                mask = norm_mask = None
                feats = self.fbank(wavs)
            else:
                mask = norm_mask = mx.array(np.arange(n_fr)[None] < frames[:, None])
                feats = self.fbank(wavs, mx.array(frames))
        if self.cfg.sentence_norm:
            feats = sentence_mean_norm(feats, norm_mask, self.cfg.sentence_std)
        return feats, mask, frames

    # --- embeddings ----------------------------------------------------------------------------

    def embed_batch(
        self,
        wavs: mx.array,
        n_samples: Sequence[int] | None = None,
        wav_lens: Sequence[float] | None = None,
        normalize: bool = False,
    ) -> mx.array:
        """(B, T) zero-padded waveforms at the model rate -> (B, lin_neurons) embeddings.

        Give `n_samples` (valid samples per row; exact per-utterance results) or `wav_lens`
        (SpeechBrain's relative lengths in (0, 1]; SpeechBrain's batched results), not both.
        """
        if n_samples is not None and wav_lens is not None:
            raise ValueError("pass n_samples or wav_lens, not both")
        if wavs.ndim == 1:
            wavs = wavs[None]
        feats, mask, frames = self.features(wavs, n_samples, wav_lens)
        exact = wav_lens is None
        if bool(np.any(frames < self.min_frames)):
            raise AudioError(
                f"audio too short: {int(frames.min())} frames, the model needs at "
                f"least {self.min_frames} ({self.min_samples} samples)"
            )
        emb = self.model(feats, mask, frames if exact else None)
        if normalize:
            if self.emb_mean is None:
                raise WeightsError(
                    "normalize=True needs mean_var_norm_emb statistics; this "
                    "folder was converted without mean_var_norm_emb.ckpt"
                )
            emb = emb - self.emb_mean
            if self.cfg.emb_norm_std and self.emb_std is not None:
                emb = emb / mx.maximum(self.emb_std, 1e-10)
        return emb

    def embed(
        self,
        audio: str | Path | np.ndarray | Sequence,
        input_sr: int | None = None,
        batch_size: int = 8,
        normalize: bool = False,
        max_batch_seconds: float = 120.0,
        progress: bool = False,
    ) -> np.ndarray:
        """Embed one utterance (path or array) or a list of them -> (N, lin_neurons) float32.

        Arrays are at `input_sr` (default: the model's 16 kHz) and resampled if needed.
        Utterances are batched by similar length (at most `batch_size` of them and
        `max_batch_seconds` of padded audio, which bounds memory); results equal
        one-at-a-time embedding. `progress` shows a tqdm bar over batches.
        """
        single = isinstance(audio, (str, Path)) or (
            isinstance(audio, np.ndarray) and audio.ndim == 1
        )
        items = [audio] if single else list(audio)
        out = np.zeros((len(items), self.model.args.lin_neurons), np.float32)
        wavs = {}  # index -> waveform of the utterances embedded whole, batched below
        for i, a in enumerate(items):
            if isinstance(a, (str, Path)) and self._long(a):
                out[i] = self.embed_file_windows(a, normalize=normalize)
            else:
                wavs[i] = as_audio(a, self.sample_rate, input_sr)
        for i, w in wavs.items():
            if w.size < self.min_samples:
                name = items[i] if isinstance(items[i], (str, Path)) else f"audio #{i}"
                raise AudioError(
                    f"{name}: {w.size} samples, shorter than the model's minimum "
                    f"of {self.min_samples} ({self.min_samples / self.sample_rate:.3f}"
                    f" s at {self.sample_rate} Hz)"
                )
        from tqdm import tqdm

        keys = np.array(list(wavs), dtype=np.int64)
        groups = _batches(
            [wavs[i].size for i in keys], batch_size, int(max_batch_seconds * self.sample_rate)
        )
        for pos in tqdm(groups, desc="embedding", unit="batch", disable=not progress):
            idx = keys[pos]
            n = np.array([wavs[i].size for i in idx])
            batch = np.zeros((len(idx), int(n.max())), np.float32)  # (B, T) zero padded
            for r, i in enumerate(idx):
                batch[r, : n[r]] = wavs[i]
            emb = self.embed_batch(mx.array(batch), n, normalize=normalize)
            out[idx] = np.array(emb)
        return out

    def _long(self, path: str | Path) -> bool:
        """Whether a file is embedded by windows: longer than LONG_SECONDS, or streamed."""
        info = audio_info(path)
        return info.frames / info.samplerate > LONG_SECONDS or is_long(info)

    def embed_file_windows(
        self,
        path: str | Path,
        normalize: bool = False,
        window_s: float = LONG_SECONDS,
        block_s: float = 60.0,
    ) -> np.ndarray:
        """(lin_neurons,) embedding of a file read in blocks of `block_s` seconds: the mean of
        the raw embeddings of k = ceil(length / window_s) equal consecutive windows (k = 1: the
        whole-utterance embedding). Memory: one window and one block, at any file length."""
        info = audio_info(path)
        sr = self.sample_rate
        n = stream_length(info, sr)
        k = max(1, -(-n // max(1, int(window_s * sr))))
        bounds = [i * n // k for i in range(k + 1)]
        embs, pieces, have = [], [], 0
        for block in stream_audio(path, block_s, sr):
            pieces.append(block)
            have += block.size
            while len(embs) < k and have >= bounds[len(embs) + 1] - bounds[len(embs)]:
                size = bounds[len(embs) + 1] - bounds[len(embs)]
                buf = np.concatenate(pieces)
                embs.append(self._embed_window(buf[:size], path, normalize))
                pieces, have = [buf[size:]], buf.size - size
        if not embs:  # shorter than its header said (stream_audio raises first)
            raise AudioError(f"{path}: no audio decoded")
        return np.mean(np.stack(embs), axis=0).astype(np.float32)

    def _embed_window(self, w: np.ndarray, path, normalize: bool) -> np.ndarray:
        if w.size < self.min_samples:
            raise AudioError(
                f"{path}: {w.size} samples, shorter than the model's minimum of "
                f"{self.min_samples} ({self.min_samples / self.sample_rate:.3f} s)"
            )
        return np.array(self.embed_batch(mx.array(w[None]), [w.size], normalize=normalize))[0]


def _batches(sizes: Sequence[int], batch_size: int, max_samples: int) -> list[np.ndarray]:
    """Index groups of similar length: sorted by size, cut at `batch_size` items or when the
    padded batch (items x longest) would exceed `max_samples` (a long item goes alone)."""
    order = np.argsort(sizes, kind="stable")
    groups: list[list[int]] = [[]]
    for i in order:
        g = groups[-1]
        if g and (len(g) >= batch_size or (len(g) + 1) * sizes[i] > max_samples):
            groups.append([])
        groups[-1].append(int(i))
    return [np.array(g) for g in groups if g]
