"""What is embedded and BM25-indexed for a chunk: its context (document title and heading path)
above its text, so a chunk that says "you can apply online" is found for *which* benefit.

The prompt still shows only the chunk's text (its location beside the source), never the context
twice. The scheme is recorded in the index manifest: an index built without it is refused with
a request to rebuild (after Anthropic's "contextual retrieval", with the context taken from the
document's own structure instead of a language model).

    chatbot index sync --rebuild     # after turning index.contextual on or off
"""

from __future__ import annotations

from index.types import Chunk

NONE = "none"
TITLE_HEADINGS = "title+headings"
SCHEMES = (NONE, TITLE_HEADINGS)


def context_line(title: str, headings: list[str]) -> str:
    """``Title > Heading > Subheading``; a heading that repeats the one before (an HTML page's
    ``<title>`` and ``<h1>`` are often the same) is given once."""
    parts: list[str] = []
    for part in [title, *headings]:
        part = " ".join(part.split())
        if part and (not parts or parts[-1].casefold() != part.casefold()):
            parts.append(part)
    return " > ".join(parts)


def indexed_text(chunk: Chunk, scheme: str) -> str:
    """The text the embedder and BM25 read for ``chunk`` under ``scheme``."""
    if scheme not in SCHEMES:
        raise ValueError(f"unknown context scheme {scheme!r}; use one of {', '.join(SCHEMES)}")
    context = chunk.metadata.get("context", "") if scheme == TITLE_HEADINGS else ""
    return f"{context}\n\n{chunk.text}" if context else chunk.text
