"""Decoding of one 30 s window: greedy, sampling (best-of), beam search with patience and length
penalty, logit filters and timestamp rules. Same semantics as openai-whisper `decoding.py`
(the reference for parity); the network runs in MLX, the per-step bookkeeping in numpy.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field, replace

import mlx.core as mx
import numpy as np

from .audio import CHUNK_LENGTH
from .model import Whisper
from .tokenizer import Tokenizer


@dataclass(frozen=True)
class DecodingOptions:
    task: str = "transcribe"  # or "translate"
    language: str | None = None  # None: detect (multilingual models)
    temperature: float = 0.0
    sample_len: int | None = None  # max tokens to sample (default n_text_ctx // 2)
    best_of: int | None = None  # independent samples when temperature > 0
    beam_size: int | None = None  # beams when temperature == 0
    patience: float | None = None  # beam search patience (arXiv:2204.05424)
    length_penalty: float | None = None  # None: divide by length; else Google NMT alpha
    prompt: str | list[int] | None = None  # previous text, for context
    prefix: str | list[int] | None = None  # forced start of this window's text
    suppress_tokens: str | list[int] | None = "-1"  # "-1": the non-speech symbols
    suppress_blank: bool = True
    without_timestamps: bool = False
    max_initial_timestamp: float | None = 1.0


@dataclass
class DecodingResult:
    audio_features: mx.array | None
    language: str
    language_probs: dict[str, float] | None = None
    tokens: list[int] = field(default_factory=list)
    text: str = ""
    avg_logprob: float = np.nan
    no_speech_prob: float = np.nan
    temperature: float = np.nan
    compression_ratio: float = np.nan


def compression_ratio(text: str) -> float:
    b = text.encode("utf-8")
    return len(b) / len(zlib.compress(b))


def _log_softmax(x: np.ndarray) -> np.ndarray:
    m = x.max(axis=-1, keepdims=True)
    z = x - m
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


_TOPK_BLOCK = 256


def top_k(x: np.ndarray, k: int) -> np.ndarray:
    """Indices of the `k` largest values of each row of `x` (n, V), unordered, as
    `np.argpartition(x, -k)[:, -k:]` returns them, but fast on rows with many equal values.

    The timestamp rules set tens of thousands of logits to -inf, and introselect over those
    ties took ~6 ms per beam-search step (5 x 51864). Here, each row is cut into blocks:
    a block holding one of the k largest values has a maximum that at most k - 1 other
    blocks exceed, so only the k blocks with the largest maxima (and the tail that does not
    fill a block) are searched."""
    n, V = x.shape
    B = _TOPK_BLOCK
    nb = V // B
    if k >= nb:
        return np.argpartition(x, -k, axis=-1)[:, -k:]
    blocks = x[:, : nb * B].reshape(n, nb, B)
    best = np.argpartition(blocks.max(axis=-1), -k, axis=-1)[:, -k:]  # (n, k) blocks
    idx = (best[:, :, None] * B + np.arange(B)).reshape(n, k * B)
    idx = np.concatenate([idx, np.broadcast_to(np.arange(nb * B, V), (n, V - nb * B))], axis=1)
    cand = np.take_along_axis(x, idx, axis=1)
    return np.take_along_axis(idx, np.argpartition(cand, -k, axis=-1)[:, -k:], axis=1)


# ------------------------------------------------------------------ logit filters (in place)
class SuppressBlank:
    def __init__(self, tokenizer: Tokenizer, sample_begin: int):
        self.ids = tokenizer.encode(" ") + [tokenizer.eot]
        self.sample_begin = sample_begin

    def apply(self, logits: np.ndarray, tokens: np.ndarray) -> None:
        if tokens.shape[1] == self.sample_begin:
            logits[:, self.ids] = -np.inf


class SuppressTokens:
    def __init__(self, ids):
        self.ids = list(ids)

    def apply(self, logits: np.ndarray, tokens: np.ndarray) -> None:
        logits[:, self.ids] = -np.inf


class ApplyTimestampRules:
    def __init__(self, tokenizer: Tokenizer, sample_begin: int, max_initial_index: int | None):
        self.tk = tokenizer
        self.sample_begin = sample_begin
        self.max_initial_index = max_initial_index

    def apply(self, logits: np.ndarray, tokens: np.ndarray) -> None:
        tb, eot = self.tk.timestamp_begin, self.tk.eot
        logits[:, self.tk.no_timestamps] = -np.inf
        for k in range(tokens.shape[0]):
            seq = tokens[k, self.sample_begin :]
            last_ts = len(seq) >= 1 and seq[-1] >= tb
            penult_ts = len(seq) < 2 or seq[-2] >= tb
            if last_ts:
                if penult_ts:  # timestamps come in pairs: next must be text
                    logits[k, tb:] = -np.inf
                else:  # after a lone timestamp: another timestamp or EOT, not text
                    logits[k, :eot] = -np.inf
            stamps = seq[seq >= tb]
            if stamps.size > 0:
                # never decrease; a segment must have nonzero length
                last = stamps[-1] if (last_ts and not penult_ts) else stamps[-1] + 1
                logits[k, tb:last] = -np.inf
        if tokens.shape[1] == self.sample_begin:
            logits[:, :tb] = -np.inf  # the first sampled token is a timestamp
            if self.max_initial_index is not None:
                logits[:, tb + self.max_initial_index + 1 :] = -np.inf
        logprobs = _log_softmax(logits.astype(np.float32))
        for k in range(tokens.shape[0]):
            ts_lp = logprobs[k, tb:]
            m = ts_lp.max()
            ts_sum = m + np.log(np.exp(ts_lp - m).sum()) if np.isfinite(m) else -np.inf
            if ts_sum > logprobs[k, :tb].max():
                logits[k, :tb] = -np.inf  # timestamps are likelier than any text token


# ------------------------------------------------------------------ inference with a KV cache
class Inference:
    """Runs the decoder on new tokens only, keeping the (explicit) cache between steps."""

    def __init__(self, model: Whisper, audio_features: mx.array):
        self.model = model
        self.audio_features = audio_features
        self.cache = None
        self.n_seen = 0

    def logits(
        self, tokens: np.ndarray, positions: list[int] | None = None, group: int = 1
    ) -> mx.array:
        """Logits at `positions` of the new tokens (default: all of them).

        `group` > 1 says rows i*group .. i*group+group-1 are the same tokens (the first call of
        beam search or best-of sampling, whose rows all start from the one prompt): the decoder
        then runs on one row of each group, and its logits and self-attention cache are
        repeated for the others. With a previous-text prompt that first call is most of a
        window's decoder work (tiny.en, beam 5, 5 x 212 tokens: ~0.4 s)."""
        new = tokens[:, self.n_seen :] if self.cache is not None else tokens
        shared = group > 1 and self.cache is None
        logits, cache = self.model.decoder(
            mx.array(new[::group] if shared else new), self.audio_features, self.cache, positions
        )
        if shared:
            cache = [(kv.repeat(group), cross) for kv, cross in cache]
            logits = mx.repeat(logits, group, axis=0)
        self.cache = cache
        self.n_seen = tokens.shape[1]
        return logits

    def rearrange(self, source: list[int]) -> None:
        """Beam search: reorder the self-attention cache rows (cross-attention is per audio)."""
        if self.cache is None or source == list(range(len(source))):
            return
        idx = mx.array(source)
        self.cache = [(kv.take(idx), cross) for kv, cross in self.cache]


# ------------------------------------------------------------------ token selection
class GreedyDecoder:
    def __init__(self, temperature: float, eot: int, seed: int = 0):
        self.temperature, self.eot = temperature, eot
        self.rng = np.random.default_rng(seed)

    def reset(self) -> None:
        pass

    def update(self, tokens, logits, sum_logprobs, inference) -> tuple[np.ndarray, bool]:
        if self.temperature == 0:
            nxt = logits.argmax(axis=-1)
        else:
            p = np.exp(_log_softmax(logits.astype(np.float64) / self.temperature))
            nxt = np.array([self.rng.choice(p.shape[-1], p=row / row.sum()) for row in p])
        logprobs = _log_softmax(logits.astype(np.float32))
        cur = logprobs[np.arange(len(nxt)), nxt]
        done = tokens[:, -1] == self.eot
        sum_logprobs += np.where(done, 0.0, cur)
        nxt[done] = self.eot
        tokens = np.concatenate([tokens, nxt[:, None]], axis=-1)
        return tokens, bool((tokens[:, -1] == self.eot).all())

    def finalize(self, tokens, sum_logprobs):
        tokens = np.pad(tokens, ((0, 0), (0, 0), (0, 1)), constant_values=self.eot)
        return [[list(t) for t in group] for group in tokens], sum_logprobs.tolist()


class BeamSearchDecoder:
    def __init__(self, beam_size: int, eot: int, patience: float | None = None):
        self.beam_size, self.eot = beam_size, eot
        self.patience = patience or 1.0
        self.max_candidates = round(beam_size * self.patience)
        if self.max_candidates <= 0:
            raise ValueError(f"invalid beam_size ({beam_size}) or patience ({patience})")
        self.finished: list[dict] | None = None

    def reset(self) -> None:
        self.finished = None

    def update(self, tokens, logits, sum_logprobs, inference) -> tuple[np.ndarray, bool]:
        n_audio = tokens.shape[0] // self.beam_size
        if self.finished is None:
            self.finished = [{} for _ in range(n_audio)]
        logprobs = _log_softmax(logits.astype(np.float32))
        k = self.beam_size + 1
        top = top_k(logprobs, k)  # the k best, unordered
        next_tokens, sources, newly = [], [], []
        for i in range(n_audio):
            scores, src = {}, {}
            for j in range(self.beam_size):
                idx = i * self.beam_size + j
                prefix = tuple(tokens[idx].tolist())
                cand = top[idx][np.argsort(-logprobs[idx, top[idx]], kind="stable")]
                for t in cand:
                    seq = prefix + (int(t),)
                    scores[seq] = float(np.float32(sum_logprobs[idx]) + logprobs[idx, t])
                    src[seq] = idx
            saved, finished = 0, {}
            for seq in sorted(scores, key=scores.get, reverse=True):
                if seq[-1] == self.eot:
                    finished[seq] = scores[seq]
                else:
                    sum_logprobs[len(next_tokens)] = scores[seq]
                    next_tokens.append(seq)
                    sources.append(src[seq])
                    saved += 1
                    if saved == self.beam_size:
                        break
            newly.append(finished)
        inference.rearrange(sources)
        for prev, new in zip(self.finished, newly):
            for seq in sorted(new, key=new.get, reverse=True):
                if len(prev) >= self.max_candidates:
                    break
                prev[seq] = new[seq]
        done = all(len(s) >= self.max_candidates for s in self.finished)
        return np.array(next_tokens, dtype=np.int64), done

    def finalize(self, tokens, sum_logprobs):
        for i, seqs in enumerate(self.finished):
            if len(seqs) < self.beam_size:  # not enough finished: add the best unfinished
                for j in np.argsort(sum_logprobs[i], kind="stable")[::-1]:
                    seqs[tuple(tokens[i, j].tolist()) + (self.eot,)] = float(sum_logprobs[i][j])
                    if len(seqs) >= self.beam_size:
                        break
        return (
            [[list(s) for s in seqs] for seqs in self.finished],
            [list(seqs.values()) for seqs in self.finished],
        )


def _rank(tokens: list[list[list[int]]], sum_logprobs, length_penalty: float | None) -> list[int]:
    out = []
    for seqs, lps in zip(tokens, sum_logprobs):
        scores = []
        for t, lp in zip(seqs, lps):
            n = len(t)
            scores.append(lp / (n if length_penalty is None else ((5 + n) / 6) ** length_penalty))
        out.append(int(np.argmax(scores)))
    return out


# ------------------------------------------------------------------ language detection
def detect_language(
    model: Whisper, audio_features: mx.array, tokenizer: Tokenizer
) -> tuple[list[int], list[dict[str, float]]]:
    """Most probable language token per audio and the distribution over languages."""
    if not model.is_multilingual:
        raise ValueError("this model is English-only: it has no language identification")
    n = audio_features.shape[0]
    x = mx.array([[tokenizer.sot]] * n)
    logits = np.array(model.decoder(x, audio_features)[0][:, 0].astype(mx.float32))
    lang_ids = np.array(tokenizer.all_language_tokens)
    sel = logits[:, lang_ids]
    probs = np.exp(_log_softmax(sel))
    best = lang_ids[sel.argmax(axis=-1)].tolist()
    return best, [dict(zip(tokenizer.all_language_codes, p.tolist())) for p in probs]


# ------------------------------------------------------------------ the task
class DecodingTask:
    def __init__(self, model: Whisper, tokenizer: Tokenizer, options: DecodingOptions):
        if options.beam_size is not None and options.best_of is not None:
            raise ValueError("beam_size and best_of can't be given together")
        if options.temperature == 0 and options.best_of is not None:
            raise ValueError("best_of with greedy sampling (T=0) is not compatible")
        if options.patience is not None and options.beam_size is None:
            raise ValueError("patience requires beam_size to be given")
        if options.length_penalty is not None and not 0 <= options.length_penalty <= 1:
            raise ValueError("length_penalty (alpha) should be a value between 0 and 1")
        self.model, self.options = model, options
        self.tokenizer = tokenizer.with_options(options.language or "en", options.task)
        self.n_group = options.beam_size or options.best_of or 1
        self.n_ctx = model.dims.n_text_ctx
        self.sample_len = options.sample_len or self.n_ctx // 2
        tk = self.tokenizer
        sot_seq = (
            tk.sot_sequence_including_notimestamps
            if options.without_timestamps
            else tk.sot_sequence
        )
        self.initial_tokens = self._initial_tokens(list(sot_seq))
        self.sample_begin = len(self.initial_tokens)
        self.sot_index = self.initial_tokens.index(tk.sot)
        if options.beam_size is not None:
            self.decoder = BeamSearchDecoder(options.beam_size, tk.eot, options.patience)
        else:
            self.decoder = GreedyDecoder(options.temperature, tk.eot)
        self.filters = []
        if options.suppress_blank:
            self.filters.append(SuppressBlank(tk, self.sample_begin))
        if options.suppress_tokens:
            self.filters.append(SuppressTokens(self._suppress_tokens()))
        if not options.without_timestamps:
            precision = CHUNK_LENGTH / model.dims.n_audio_ctx  # 0.02 s per timestamp token
            max_idx = None
            if options.max_initial_timestamp:
                max_idx = round(options.max_initial_timestamp / precision)
            self.filters.append(ApplyTimestampRules(tk, self.sample_begin, max_idx))

    def _initial_tokens(self, tokens: list[int]) -> tuple[int, ...]:
        tk, o = self.tokenizer, self.options
        if o.prefix:
            pre = tk.encode(" " + o.prefix.strip()) if isinstance(o.prefix, str) else o.prefix
            if self.sample_len is not None:
                pre = pre[-(self.n_ctx // 2 - self.sample_len) :]
            tokens = tokens + list(pre)
        if o.prompt:
            pr = tk.encode(" " + o.prompt.strip()) if isinstance(o.prompt, str) else o.prompt
            tokens = [tk.sot_prev] + list(pr)[-(self.n_ctx // 2 - 1) :] + tokens
        return tuple(tokens)

    def _suppress_tokens(self) -> tuple[int, ...]:
        s = self.options.suppress_tokens
        if isinstance(s, str):
            s = [int(t) for t in s.split(",") if t.strip()]
        s = list(s or [])
        if -1 in s:
            s = [t for t in s if t >= 0] + list(self.tokenizer.non_speech_tokens)
        tk = self.tokenizer
        s += [tk.transcribe, tk.translate, tk.sot, tk.sot_prev, tk.sot_lm, tk.no_speech]
        return tuple(sorted(set(s)))

    def run(
        self, mel: mx.array | None = None, audio_features: mx.array | None = None
    ) -> list[DecodingResult]:
        """mel: (B, 3000, n_mels), or precomputed audio_features (B, n_audio_ctx, C)."""
        tk, o = self.tokenizer, self.options
        self.decoder.reset()
        if audio_features is None:
            audio_features = self.model.embed_audio(mel)
        n_audio = audio_features.shape[0]
        tokens = np.tile(np.array(self.initial_tokens, dtype=np.int64), (n_audio, 1))
        languages, lang_probs = [o.language] * n_audio, None
        if o.language is None:
            lang_tokens, lang_probs = detect_language(self.model, audio_features, tk)
            languages = [max(p, key=p.get) for p in lang_probs]
            tokens[:, self.sot_index + 1] = lang_tokens
        tokens = np.repeat(tokens, self.n_group, axis=0)
        # the decoder broadcasts each audio's features over its n_group rows
        tokens, sum_logprobs, no_speech = self._main_loop(audio_features, tokens)
        tokens = tokens.reshape(n_audio, self.n_group, -1)
        sum_logprobs = sum_logprobs.reshape(n_audio, self.n_group)
        cands, lps = self.decoder.finalize(tokens, sum_logprobs)
        cands = [
            [t[self.sample_begin : t.index(tk.eot, self.sample_begin)] for t in s] for s in cands
        ]
        chosen = _rank(cands, lps, o.length_penalty)
        results = []
        for i in range(n_audio):
            toks = [int(t) for t in cands[i][chosen[i]]]
            text = tk.decode(toks).strip()
            results.append(
                DecodingResult(
                    audio_features=audio_features[i],
                    language=languages[i] or "en",
                    language_probs=lang_probs[i] if lang_probs else None,
                    tokens=toks,
                    text=text,
                    avg_logprob=lps[i][chosen[i]] / (len(toks) + 1),
                    no_speech_prob=no_speech[i * self.n_group],
                    temperature=o.temperature,
                    compression_ratio=compression_ratio(text),
                )
            )
        return results

    def _main_loop(self, audio_features: mx.array, tokens: np.ndarray):
        n = tokens.shape[0]
        sum_logprobs = np.zeros(n, dtype=np.float32)  # float32 like the reference
        no_speech = [np.nan] * n
        inference = Inference(self.model, audio_features)
        for i in range(self.sample_len):
            # project only the positions used: the last one (and <|startoftranscript|> at first);
            # at first every group's rows hold the same tokens, so one per group is decoded
            positions = [self.sot_index, -1] if i == 0 else [-1]
            logits = inference.logits(tokens, positions, group=self.n_group)
            last = logits[:, -1]
            if i == 0:
                at_sot = logits[:, 0].astype(mx.float32)
                probs = mx.softmax(at_sot, axis=-1)[:, self.tokenizer.no_speech]
                last, probs = np.array(last.astype(mx.float32)), np.array(probs)
                no_speech = probs.tolist()
            else:
                last = np.array(last.astype(mx.float32))
            for f in self.filters:
                f.apply(last, tokens)
            tokens, done = self.decoder.update(tokens, last, sum_logprobs, inference)
            if done or tokens.shape[-1] > self.n_ctx:
                break
        return tokens, sum_logprobs, no_speech


def decode(
    model: Whisper,
    tokenizer: Tokenizer,
    mel: mx.array,
    options: DecodingOptions = DecodingOptions(),
    **kwargs,
) -> list[DecodingResult]:
    """Decode (B, 3000, n_mels) mel windows (or a single (3000, n_mels))."""
    if kwargs:
        options = replace(options, **kwargs)
    if mel.ndim == 2:
        mel = mel[None]
    return DecodingTask(model, tokenizer, options).run(mel)
