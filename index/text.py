"""Text as a tokenizer and SQLite take it, shared by every layer that receives text from
people: chat messages, API requests, log notes, search queries and question files."""

from __future__ import annotations

import unicodedata


def clean_text(text: str) -> str:
    """``text`` without control characters (newlines and tabs stay) and lone surrogates: the
    tokenizer can't encode a surrogate and the log can't store one."""
    return "".join(ch for ch in text
                   if ch in "\n\t" or unicodedata.category(ch) not in ("Cc", "Cs"))
