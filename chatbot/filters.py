"""Output filters: run on every answer before it is shown or logged.

A filter is a function ``text -> text``; it returns its input unchanged when it has nothing to
do. The engine applies them in order to the text streamed so far, so what a user sees has
already been filtered.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

TextFilter = Callable[[str], str]


@dataclass(frozen=True)
class NamedFilter:
    name: str
    apply: TextFilter


def blocklist_filter(phrases: Sequence[str], replacement: str) -> NamedFilter:
    """Replace the whole answer when it contains any blocked phrase (whole words, any case)."""
    pattern = re.compile(r"\b(?:" + "|".join(re.escape(p) for p in phrases) + r")\b",
                         re.IGNORECASE)

    def apply(text: str) -> str:
        return replacement if pattern.search(text) else text

    return NamedFilter("blocklist", apply)


def pii_filter() -> NamedFilter:
    """Mask emails, phone numbers, card numbers and other PII with typed placeholders."""
    from chatbot.pii import scrub

    return NamedFilter("pii", lambda text: scrub(text)[0])


def build_filters(blocklist: Sequence[str], replacement: str,
                  redact_pii: bool) -> list[NamedFilter]:
    filters = [blocklist_filter(blocklist, replacement)] if blocklist else []
    if redact_pii:
        filters.append(pii_filter())
    return filters


def run_filters(filters: Sequence[NamedFilter], text: str) -> tuple[str, list[str]]:
    """The filtered text and the names of the filters that changed it."""
    changed = []
    for named in filters:
        result = named.apply(text)
        if result != text:
            changed.append(named.name)
            text = result
    return text, changed
