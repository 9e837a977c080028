"""Durations and transcript lengths against the target model's limits."""

from __future__ import annotations

import math

from ..core import Context, Finding, check
from ._util import num, rid

# Whisper's prompt before the text (<|startoftranscript|>, language, task, notimestamps) and
# <|endoftext|> after it.
SPECIAL_TOKENS = 5
# Measured with Whisper's tokenizers on LibriSpeech transcripts (upper and lower case): at most
# 0.52 tokens per UTF-8 byte (mean 0.28-0.30). 0.55 keeps the estimate an over-count.
TOKENS_PER_BYTE = 0.55


def estimate_tokens(text: str) -> int:
    """Conservative decoder-token count for a transcript (never under Whisper's real count on
    English; pass a tokenizer for an exact count)."""
    return math.ceil(len(text.encode("utf-8")) * TOKENS_PER_BYTE) + SPECIAL_TOKENS


def whisper_token_counter(multilingual: bool = True):
    """An exact counter from openai-whisper's tokenizer (needs openai-whisper installed)."""
    from whisper.tokenizer import get_tokenizer

    tok = get_tokenizer(multilingual=multilingual)
    return lambda text: len(tok.encode(text)) + SPECIAL_TOKENS - 1  # no <|notimestamps|> needed


@check("limits", "durations within the model window; transcripts within the decoder context")
def limits(ctx: Context) -> list[Finding]:
    p, out = ctx.profile, []
    counter = ctx.count_tokens or estimate_tokens
    how = "tokens" if ctx.count_tokens else "tokens (estimated; pass a tokenizer for exact)"
    for i, rec in enumerate(ctx.records):
        item, dur = rid(rec, i), num(rec, "duration")
        if dur is not None and p.max_duration is not None and dur > p.max_duration:
            out.append(
                Finding(
                    "limits.duration",
                    "error",
                    item,
                    f"<= {p.max_duration:g} s ({p.name} model window)",
                    f"{dur:.2f} s",
                )
            )
        if dur is not None and dur < p.min_duration:
            out.append(
                Finding("limits.short", "warning", item, f">= {p.min_duration:g} s", f"{dur:.3f} s")
            )
        text = rec.get("text")
        if p.needs_text and not (isinstance(text, str) and text.strip()):
            out.append(Finding("limits.text", "error", item, f"a transcript ({p.name})", "no text"))
        elif p.max_tokens and isinstance(text, str):
            n = counter(text)
            if n > p.max_tokens:
                out.append(
                    Finding(
                        "limits.tokens", "error", item, f"<= {p.max_tokens} decoder {how}", f"{n}"
                    )
                )
    return out
