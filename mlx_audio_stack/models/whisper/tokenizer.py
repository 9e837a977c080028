"""Whisper's byte-level BPE tokenizer, read from the files shipped with the weights (no network).

Reads Hugging Face `tokenizer.json` (or `vocab.json` + `added_tokens.json`) and openai-whisper's
`*.tiktoken` files. Encoding is rank-based byte-pair merging (a merged token's rank is its id,
as in GPT-2's vocabulary), so ids equal openai-whisper's tiktoken encoding. Special tokens and
the sot/language/task sequence follow openai-whisper's `Tokenizer`.
"""

from __future__ import annotations

import base64
import json
import string
from functools import cached_property, lru_cache
from pathlib import Path

from ...errors import WeightsError

# Language codes in token order (openai-whisper `LANGUAGES`); the first `num_languages` are used.
LANGUAGES = (
    "en zh de es ru ko fr ja pt tr pl ca nl ar sv it id hi fi vi he uk el ms cs ro da hu ta no th "
    "ur hr bg lt la mi ml cy sk te fa lv bn sr az sl kn et mk br eu is hy ne mn bs kk sq sw gl mr "
    "pa si km sn yo so af oc ka be tg sd gu am yi lo uz fo ht ps tk nn mt sa lb my bo tl mg as tt "
    "haw ln ha ba jw su yue"
).split()

try:  # the `regex` module knows \p{L}/\p{N}; the stdlib fallback matches them for real text
    import regex as _re

    PAT = _re.compile(
        r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
    )
except ImportError:  # pragma: no cover - depends on the environment
    import re as _re

    PAT = _re.compile(
        r"""'s|'t|'re|'ve|'m|'ll|'d| ?[^\W\d_]+| ?\d+| ?(?:[^\s\w]|_)+|\s+(?!\S)|\s+"""
    )


@lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    """GPT-2's printable-unicode stand-ins for bytes (vocab.json strings) -> byte values."""
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def _bpe(piece: bytes, ranks: dict[bytes, int]) -> list[int]:
    if piece in ranks:
        return [ranks[piece]]
    parts = [piece[i : i + 1] for i in range(len(piece))]
    while len(parts) > 1:
        best, best_i = None, -1
        for i in range(len(parts) - 1):
            r = ranks.get(parts[i] + parts[i + 1])
            if r is not None and (best is None or r < best):
                best, best_i = r, i
        if best is None:
            break
        parts[best_i : best_i + 2] = [parts[best_i] + parts[best_i + 1]]
    return [ranks[p] for p in parts]


@lru_cache(maxsize=8)
def _load_files(path: Path) -> tuple[dict[bytes, int], dict[str, int]]:
    """Return (ranks: token bytes -> id, specials: content -> id)."""
    if not path.exists():
        raise WeightsError(f"{path}: tokenizer file missing; convert the weights again")
    if path.suffix == ".tiktoken":
        ranks = {}
        for line in path.read_text().splitlines():
            if line:
                tok, rank = line.split()
                ranks[base64.b64decode(tok)] = int(rank)
        return ranks, {}
    dec = _byte_decoder()
    if path.name == "tokenizer.json":
        d = json.loads(path.read_text())
        vocab = d["model"]["vocab"]
        specials = {t["content"]: t["id"] for t in d.get("added_tokens", [])}
    else:  # vocab.json (+ added_tokens.json)
        vocab = json.loads(path.read_text())
        added = path.with_name("added_tokens.json")
        specials = json.loads(added.read_text()) if added.exists() else {}
    ranks = {}
    for tok, i in vocab.items():
        if tok in specials:
            continue
        try:
            ranks[bytes(dec[c] for c in tok)] = i
        except KeyError:  # a special-looking entry inside vocab
            specials[tok] = i
    return ranks, specials


def _openai_specials(n_vocab: int, num_languages: int) -> dict[str, int]:
    names = [
        "<|endoftext|>",
        "<|startoftranscript|>",
        *[f"<|{c}|>" for c in LANGUAGES[:num_languages]],
        "<|translate|>",
        "<|transcribe|>",
        "<|startoflm|>",
        "<|startofprev|>",
        "<|nospeech|>",
        "<|notimestamps|>",
        *[f"<|{i * 0.02:.2f}|>" for i in range(1501)],
    ]
    return {n: n_vocab + i for i, n in enumerate(names)}


class Tokenizer:
    """openai-whisper-compatible tokenizer; `language`/`task` set the sot sequence."""

    def __init__(
        self,
        ranks: dict[bytes, int],
        specials: dict[str, int],
        num_languages: int,
        multilingual: bool,
        language: str | None = None,
        task: str | None = None,
    ):
        self.ranks = ranks
        self.special_tokens = dict(specials)
        if "<|nospeech|>" not in specials and "<|nocaptions|>" in specials:
            self.special_tokens["<|nospeech|>"] = specials["<|nocaptions|>"]  # older name
        self.num_languages = num_languages
        self.is_multilingual = multilingual
        if multilingual:
            language, task = (language or "en"), (task or "transcribe")
        else:
            language, task = None, None
        if language is not None and language not in LANGUAGES[:num_languages]:
            raise ValueError(
                f"language {language!r} is not one of this model's {num_languages} languages"
            )
        if task not in (None, "transcribe", "translate"):
            raise ValueError(f"task must be 'transcribe' or 'translate', got {task!r}")
        self.language, self.task = language, task
        self.decoder = {i: b for b, i in ranks.items()}
        for s, i in self.special_tokens.items():
            self.decoder.setdefault(i, s.encode())
        seq = [self.sot]
        if language is not None:
            seq.append(self.sot + 1 + LANGUAGES.index(language))
        if task is not None:
            seq.append(self.transcribe if task == "transcribe" else self.translate)
        self.sot_sequence = tuple(seq)

    def with_options(self, language: str | None, task: str | None) -> Tokenizer:
        return Tokenizer(
            self.ranks,
            self.special_tokens,
            self.num_languages,
            self.is_multilingual,
            language,
            task,
        )

    # -------------------------------------------------------------- text <-> ids
    def encode(self, text: str) -> list[int]:
        ids: list[int] = []
        for piece in PAT.findall(text):
            ids.extend(_bpe(piece.encode("utf-8"), self.ranks))
        return ids

    def decode(self, ids: list[int]) -> str:
        """Text of `ids`; timestamp tokens are dropped (as openai-whisper's `decode`)."""
        return self.decode_with_timestamps([i for i in ids if i < self.timestamp_begin])

    def decode_with_timestamps(self, ids: list[int]) -> str:
        out = bytearray()
        for i in ids:
            if i >= self.timestamp_begin:
                out += f"<|{(i - self.timestamp_begin) * 0.02:.2f}|>".encode()
            else:
                out += self.decoder.get(i, b"")
        return out.decode("utf-8", errors="replace")

    # -------------------------------------------------------------- special ids
    def _special(self, name: str) -> int:
        if name not in self.special_tokens:
            raise WeightsError(f"tokenizer has no {name} token")
        return self.special_tokens[name]

    @cached_property
    def eot(self) -> int:
        return self._special("<|endoftext|>")

    @cached_property
    def sot(self) -> int:
        return self._special("<|startoftranscript|>")

    @cached_property
    def translate(self) -> int:
        return self._special("<|translate|>")

    @cached_property
    def transcribe(self) -> int:
        return self._special("<|transcribe|>")

    @cached_property
    def sot_lm(self) -> int:
        return self._special("<|startoflm|>")

    @cached_property
    def sot_prev(self) -> int:
        return self._special("<|startofprev|>")

    @cached_property
    def no_speech(self) -> int:
        return self._special("<|nospeech|>")

    @cached_property
    def no_timestamps(self) -> int:
        return self._special("<|notimestamps|>")

    @cached_property
    def timestamp_begin(self) -> int:
        return self.special_tokens.get("<|0.00|>", self.no_timestamps + 1)

    @cached_property
    def all_language_tokens(self) -> tuple[int, ...]:
        return tuple(self.sot + 1 + i for i in range(self.num_languages))

    @property
    def all_language_codes(self) -> tuple[str, ...]:
        return tuple(LANGUAGES[: self.num_languages])

    @property
    def sot_sequence_including_notimestamps(self) -> tuple[int, ...]:
        return (*self.sot_sequence, self.no_timestamps)

    @cached_property
    def non_speech_tokens(self) -> tuple[int, ...]:
        """Tokens suppressed by default (speaker tags, music symbols...), as openai-whisper."""
        symbols = list('"#()*+/:;<=>@[\\]^_`{|}~「」『』')
        symbols += "<< >> <<< >>> -- --- -( -[ (' (\" (( )) ((( ))) [[ ]] {{ }} ♪♪ ♪♪♪".split()
        miscellaneous = set("♩♪♫♬♭♮♯")
        result = {self.encode(" -")[0], self.encode(" '")[0]}
        for symbol in symbols + sorted(miscellaneous):
            for tokens in (self.encode(symbol), self.encode(" " + symbol)):
                if len(tokens) == 1 or symbol in miscellaneous:
                    result.add(tokens[0])
        return tuple(sorted(result))

    def split_to_word_tokens(self, tokens: list[int]) -> tuple[list[str], list[list[int]]]:
        """Words (with their leading space) and their tokens, for word-level timestamps."""
        words, word_tokens, current = [], [], []
        for t in tokens:  # group at boundaries where the bytes decode to whole characters
            current.append(t)
            text = self.decode_with_timestamps(current)
            if "\ufffd" not in text:
                words.append(text)
                word_tokens.append(current)
                current = []
        if self.language in {"zh", "ja", "th", "lo", "my", "yue"}:
            return words, word_tokens  # no spaces between words: split at characters
        merged_w, merged_t = [], []
        for w, ts in zip(words, word_tokens):
            special = ts[0] >= self.eot
            if special or w.startswith(" ") or w.strip() in string.punctuation or not merged_w:
                merged_w.append(w)
                merged_t.append(list(ts))
            else:
                merged_w[-1] += w
                merged_t[-1].extend(ts)
        return merged_w, merged_t


def load_tokenizer(
    path: str | Path, n_vocab: int, language: str | None = None, task: str | None = None
) -> Tokenizer:
    """Tokenizer for a model with `n_vocab` entries, from its shipped tokenizer file."""
    path = Path(path)
    if path.exists() and not path.is_file():
        raise WeightsError(f"{path}: the tokenizer is not a regular file")
    try:
        ranks, specials = _load_files(path)
    except WeightsError:
        raise
    except Exception as exc:  # a malformed tokenizer file: one line, not a traceback
        raise WeightsError(
            f"{path}: malformed tokenizer file ({type(exc).__name__}: {exc})"
        ) from None
    multilingual = n_vocab >= 51865
    num_languages = n_vocab - 51765 - int(multilingual)
    if not specials or "<|startoftranscript|>" not in specials:
        specials = _openai_specials(len(ranks), num_languages)
    return Tokenizer(ranks, specials, num_languages, multilingual, language, task)
