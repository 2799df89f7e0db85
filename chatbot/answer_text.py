"""What of an answer still being generated may be shown, and what its generation cost.

An answer streams to its reader while the model writes it, but the output filters (personal
data, the blocklist) judge text that may still grow: a phone number written one group at a time
is not yet a phone number. So the stream shows only text the filters can no longer change.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from chatbot.generate import Generator

HOLD_BACK_CHARS = 80
"""While filters run, this much of the filtered text's end waits for what follows: personal
data runs across words (``020 7946 0018``, an IBAN in groups, a street address), and the first
words of it, once sent, cannot be taken back from a streaming client."""


def before_stop(text: str, stop: Sequence[str], final: bool = False) -> tuple[str, bool]:
    """Text before the first stop string (which is never shown), and whether one was found.

    While generating, a tail that may still grow into a stop string is held back too.
    """
    cuts = [i for i in (text.find(s) for s in stop if s) if i >= 0]
    if cuts:
        return text[:min(cuts)], True
    if final or not stop:
        return text, False
    return text[:max(0, len(text) - max(map(len, stop)) + 1)], False


def complete_words(text: str) -> str:
    """Text up to its last space: a word still being generated may yet become PII."""
    cut = max(text.rfind(" "), text.rfind("\n"))
    return text[:cut].rstrip() if cut >= 0 else ""


def settled(filtered: str, hold_back: int) -> str:
    """The part of ``filtered`` (the filters' output so far) no later word can change: all but
    its last ``hold_back`` characters, cut at a space."""
    if not hold_back:
        return filtered
    return complete_words(filtered[:max(0, len(filtered) - hold_back)])


def milliseconds(start: float, end: float) -> float:
    return round((end - start) * 1000, 1)


def generation_timings(started: float, first: float | None, raw: str, generator: Generator,
                       refused: bool, max_new_tokens: int) -> dict[str, float]:
    """First-token and total time, tokens and their rate. ``raw`` is counted again with the
    model's tokenizer, which can count a token more than were generated (a word's leading
    space joins it differently), so the count never exceeds ``max_new_tokens``."""
    end = time.perf_counter()
    tokens = 0 if refused or not raw else min(generator.count_text(raw), max_new_tokens)
    decode_s = end - first if first else 0.0
    return {"first_token_ms": milliseconds(started, first) if first else None,
            "total_ms": milliseconds(started, end), "tokens": tokens,
            "tokens_per_s": round(tokens / decode_s, 2) if decode_s > 0 and tokens else None}


def reached_token_limit(pieces: object, tokens: int, max_new_tokens: int) -> bool:
    """Whether an answer ended at ``max_new_tokens``: the server's own ``finish_reason`` where
    the pieces carry one (a remote backend's ``ServerAnswer``), else its token count."""
    reason = getattr(pieces, "finish_reason", None)
    return reason == "length" if reason is not None else tokens >= max_new_tokens


__all__ = ["HOLD_BACK_CHARS", "before_stop", "complete_words", "generation_timings",
           "milliseconds", "reached_token_limit", "settled"]
