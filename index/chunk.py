"""Documents to chunks sized in the embedder's own tokens, so none is silently truncated.

The only import of langchain-text-splitters. Markdown (and HTML/.docx, which load as Markdown) is
split at headings first and each chunk keeps its heading path (``Install > Linux``) as its
location; PDF chunks never cross a page and say which page; table rows say which row. Each chunk
also carries its context (``metadata["context"]``: the document title and heading path), which
``index/context.py`` puts above the text that is embedded and BM25-indexed.

    chatbot index sync docs/
"""

from __future__ import annotations

import hashlib
from typing import Callable

from index.context import context_line
from index.types import Chunk, Document

_HEADINGS = [("#" * level, f"h{level}") for level in range(1, 7)]
_SEPARATORS = ["\n\n", "\n", ". ", " ", ""]
MAX_CHARS_PER_TOKEN = 10
"""A chunk is also sized as if each token held at most this many characters. Text runs at 4-6;
a string without spaces (a base64 image, minified code) can be one token for thousands of
characters (MiniLM reads any word over 100 characters as one ``[UNK]``), and would otherwise be
one chunk too long for any prompt."""


def chunk_documents(docs: list[Document], count_tokens: Callable[[str], int], max_tokens: int,
                    chunk_tokens: int, chunk_overlap: int) -> list[Chunk]:
    """All chunks of ``docs``, in order; none longer than ``min(chunk_tokens, max_tokens)``,
    and a chunk with its context above it no longer than ``max_tokens`` either (a long heading
    path takes room from the text, down to half the size at most)."""
    size, length = min(chunk_tokens, max_tokens), _at_least_per_chars(count_tokens)
    chunks: list[Chunk] = []
    for doc in docs:
        pieces = _pieces(doc, length, max_tokens, size, chunk_overlap)
        chunks.extend(_chunk(doc, index, location, context, text)
                      for index, (location, context, text) in enumerate(pieces))
    return chunks


def _at_least_per_chars(count_tokens: Callable[[str], int]) -> Callable[[str], int]:
    """``count_tokens``, counting at least a token for every ``MAX_CHARS_PER_TOKEN`` characters."""
    return lambda text: max(count_tokens(text), -(-len(text) // MAX_CHARS_PER_TOKEN))


def _pieces(doc: Document, count_tokens: Callable[[str], int], max_tokens: int, size: int,
            overlap: int) -> list[tuple[str, str, str]]:
    """(location, context, text) of each chunk of ``doc``, in order."""
    pieces = []
    for location, section in _sections(doc):
        context = _context(doc, location)
        room = max_tokens - count_tokens(context + "\n\n") if context else size
        fit = max(size // 2, min(size, room))
        splitter = _splitter(count_tokens, fit, min(overlap, fit // 2))
        pieces.extend((location, context, text)
                      for text in _fit(splitter, count_tokens, fit, section))
    return pieces


def _context(doc: Document, location: str) -> str:
    """The document title and, for Markdown (HTML, .docx), the heading path."""
    markdown = doc.metadata.get("format") == "markdown"
    return context_line(doc.metadata.get("title", ""),
                        location.split(" > ") if markdown and location else [])


def _splitter(count_tokens: Callable[[str], int], size: int, overlap: int):
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    return RecursiveCharacterTextSplitter(chunk_size=size, chunk_overlap=overlap,
                                          length_function=count_tokens, separators=_SEPARATORS)


def _sections(doc: Document) -> list[tuple[str, str]]:
    """(location, text) parts of a document that no chunk may straddle."""
    fmt = doc.metadata.get("format")
    if fmt == "markdown":
        return _markdown_sections(doc.text)
    if fmt == "pdf":
        return _pages(doc.text, doc.metadata.get("pages", []))
    if "row" in doc.metadata:
        return [(f"row {doc.metadata['row']}", doc.text)]
    return [("", doc.text)]


def _markdown_sections(text: str) -> list[tuple[str, str]]:
    from langchain_text_splitters import MarkdownHeaderTextSplitter

    splitter = MarkdownHeaderTextSplitter(_HEADINGS, strip_headers=True)
    sections = []
    for part in splitter.split_text(text):
        path = [part.metadata[key] for _, key in _HEADINGS if key in part.metadata]
        sections.append((" > ".join(path), part.page_content))
    if not any(section.strip() for _, section in sections):
        # Headings and nothing under them (an outline, a title page): the headings are the
        # text, or the file would be indexed with no chunk at all.
        return [("", "\n".join(line.lstrip("#").strip() for line in text.splitlines()
                                if line.strip()))]
    return sections


def _pages(text: str, pages: list) -> list[tuple[str, str]]:
    if not pages:
        return [("", text)]
    bounds = [offset for offset, _ in pages[1:]] + [len(text)]
    return [(f"page {number}", text[offset:end].strip())
            for (offset, number), end in zip(pages, bounds)]


def _fit(splitter, count_tokens: Callable[[str], int], size: int, text: str) -> list[str]:
    """Split ``text``; a piece over ``size`` tokens once joined is split again, smaller."""
    if count_tokens(text) <= size:  # most sections fit whole: skip the splitter's many counts
        return [text.strip()] if text.strip() else []
    pieces = []
    for piece in splitter.split_text(text):
        if count_tokens(piece) <= size:
            pieces.append(piece)
        else:  # token counts of parts need not add up exactly to the count of the whole
            smaller = _splitter(count_tokens, max(1, size * 3 // 4), 0)
            pieces.extend(_fit(smaller, count_tokens, size, piece))
    return [piece for piece in pieces if piece.strip()]


def _chunk(doc: Document, index: int, location: str, context: str, text: str) -> Chunk:
    # The hash covers the context too: a renamed heading changes what is embedded.
    content_hash = hashlib.sha256(f"{context}\0{text}".encode()).hexdigest()
    key = f"{doc.source}\0{doc.metadata.get('row', '')}\0{index}\0{content_hash}"
    metadata = {"index": index}
    if "row" in doc.metadata:
        metadata["row"] = doc.metadata["row"]
    if doc.metadata.get("title"):
        metadata["title"] = doc.metadata["title"]
    if context:
        metadata["context"] = context
    return Chunk(chunk_id=hashlib.sha256(key.encode()).hexdigest()[:16], source=doc.source,
                 text=text, location=location, content_hash=content_hash, metadata=metadata)
