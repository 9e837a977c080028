"""Speaker embeddings from audio with the voice encoder: resemblyzer's
`VoiceEncoder.embed_utterance` for any number of utterances, their partials in one batch.

What `embed` does to a waveform is exactly what `embed_utterance(wav)` does to the array it is
given: no volume normalisation and no silence trimming. Those two steps belong to resemblyzer's
`preprocess_wav` (a separate call, with webrtcvad); here audio is only loaded, made mono and
resampled to 16 kHz. Per utterance: partial utterances of 1.6 s every 1/rate s (the last kept
when it covers >= min_coverage of its span; one zero-padded partial when the utterance is
shorter than 1.6 s), each embedded (L2-normalised), their mean L2-normalised.

Long files (`audio.is_long`: over 15 minutes or 2**24 samples) are read block by block
(`audio.stream_audio`) and each partial is embedded as soon as its samples have arrived: the
same partials as for the whole file, in bounded memory, so the embedding equals the whole-file
one (up to float rounding of the batched LSTM, below 1e-6).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain
from pathlib import Path

import mlx.core as mx
import numpy as np

from ...audio import as_audio, audio_info, is_long, stream_audio, stream_length
from ...errors import AudioError
from .frontend import MIN_COVERAGE, RATE, mel_frames, partial_slices, utterance_partials
from .model import VoiceEncoderNet

# raw-cosine decision threshold: between the EER thresholds measured on the two LibriSpeech
# trial lists of reports/voice_encoder.md (0.726 untranscribed halves, 0.748 test-other pairs)
DEFAULT_THRESHOLD = 0.74
MAX_PARTIALS = 64  # partials per forward pass (bounds memory: ~41 MB of gate buffers at 64)


class VoiceEncoder:
    """Resemblyzer's GE2E voice encoder (256-d, L2-normalised embeddings).

    >>> enc = load_model("weights/voice-encoder")  # models/voice_encoder/load.py
    >>> e = enc.embed(["a.wav", "b.wav"])          # (2, 256) numpy float32, unit rows
    """

    name = "voice-encoder"
    threshold = DEFAULT_THRESHOLD  # default `mas verify` threshold on raw cosine

    def __init__(self, model: VoiceEncoderNet):
        self.model = model
        self.args = model.args
        self.sample_rate = model.args.sampling_rate
        self.dim = model.args.model_embedding_size
        self.min_samples = 1  # shorter than one partial: zero-padded, as resemblyzer does

    def embed_partials(self, mels: np.ndarray) -> np.ndarray:
        """(P, frames, n_mels) mel partials -> (P, dim) unit embeddings, in batches."""
        out = np.empty((mels.shape[0], self.dim), np.float32)
        for lo in range(0, mels.shape[0], MAX_PARTIALS):
            e = self.model(mx.array(mels[lo : lo + MAX_PARTIALS]))
            out[lo : lo + MAX_PARTIALS] = np.array(e)
        return out

    def embed(
        self,
        audio: str | Path | np.ndarray | Sequence,
        input_sr: int | None = None,
        rate: float = RATE,
        min_coverage: float = MIN_COVERAGE,
        progress: bool = False,
        return_partials: bool = False,
    ):
        """Embed one utterance (path or 1-D array) or a list of them -> (N, dim) float32.

        Arrays are at `input_sr` (default 16 kHz) and resampled if needed. Rows are unit
        length. All partials of all utterances go through the LSTM as one batch (in chunks of
        MAX_PARTIALS); the result equals one-at-a-time embedding. `return_partials` also
        returns each utterance's (P_i, dim) partial embeddings.
        """
        single = isinstance(audio, (str, Path)) or (
            isinstance(audio, np.ndarray) and audio.ndim == 1
        )
        items = [audio] if single else list(audio)
        if not items:
            empty = np.zeros((0, self.dim), np.float32)
            return (empty, []) if return_partials else empty
        from tqdm import tqdm

        per: list[np.ndarray] = []
        pending: list[np.ndarray] = []  # partials of files not yet through the model
        with tqdm(total=len(items), desc="embedding", unit="file", disable=not progress) as bar:

            def flush() -> None:
                if pending:
                    counts = [p.shape[0] for p in pending]
                    e = self.embed_partials(np.concatenate(pending))
                    per.extend(np.split(e, np.cumsum(counts)[:-1]))
                    bar.update(len(pending))
                    pending.clear()

            for i, item in enumerate(items):
                if isinstance(item, (str, Path)) and is_long(audio_info(item)):
                    flush()  # keep the order of `per`
                    per.append(self.file_partials(item, rate, min_coverage))
                    bar.update(1)
                    continue
                wav = as_audio(item, self.sample_rate, input_sr)
                if wav.size == 0:
                    name = item if isinstance(item, (str, Path)) else f"audio #{i}"
                    raise AudioError(f"{name}: empty audio (0 samples)")
                pending.append(utterance_partials(wav, self.args, rate, min_coverage))
                if sum(p.shape[0] for p in pending) >= MAX_PARTIALS:
                    flush()
            flush()
        raw = np.stack([p.mean(axis=0) for p in per])
        out = (raw / np.linalg.norm(raw, axis=1, keepdims=True)).astype(np.float32)
        return (out, per) if return_partials else out

    def file_partials(
        self,
        path: str | Path,
        rate: float = RATE,
        min_coverage: float = MIN_COVERAGE,
        block_s: float = 60.0,
    ) -> np.ndarray:
        """The (P, dim) partial embeddings of an audio file, read in blocks of `block_s`
        seconds: the partials `embed` cuts from the whole file (their grid needs only the
        length, known from the header), each computed once its samples have arrived. Memory
        is one block plus the partials' embeddings, at any file length."""
        info = audio_info(path)
        sr, a = self.sample_rate, self.args
        n = stream_length(info, sr)
        starts = partial_slices(n, a, rate, min_coverage)
        pn, hop, half = a.partials_n_frames, a.hop, a.n_fft // 2
        buf, offset, k, out = np.zeros(0, np.float32), 0, 0, []
        for block in chain(stream_audio(path, block_s, sr), [None]):  # None: the end
            if block is not None:
                buf = np.concatenate([buf, block])
            end = n if block is None else offset + buf.size  # at the end: zeros up to n
            j = k
            while j < len(starts) and min((starts[j] + pn - 1) * hop + a.n_fft - half, n) <= end:
                j += 1
            if j > k:  # partials k..j-1 complete: their frames lie in buf
                mels = np.stack([mel_frames(buf, a, s, pn, offset) for s in starts[k:j]])
                out.append(self.embed_partials(mels))
                k = j
            if k < len(starts):  # keep what the next partial's first frame needs
                drop = max(0, min(starts[k] * hop - half - offset, buf.size))
                buf, offset = buf[drop:], offset + drop
        return np.concatenate(out)
