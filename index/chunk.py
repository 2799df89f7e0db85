"""Documents to chunks sized in the embedder's own tokens, so none is silently truncated.

The only import of langchain-text-splitters. Markdown (and HTML/.docx, which load as Markdown) is
split at headings first and each chunk keeps its heading path (``Install > Linux``) as its
location; PDF chunks never cross a page and say which page; table rows say which row.

    chatbot index sync docs/
"""

from __future__ import annotations

import hashlib
from typing import Callable

from index.types import Chunk, Document

_HEADINGS = [("#" * level, f"h{level}") for level in range(1, 7)]
_SEPARATORS = ["\n\n", "\n", ". ", " ", ""]


def chunk_documents(docs: list[Document], count_tokens: Callable[[str], int], max_tokens: int,
                    chunk_tokens: int, chunk_overlap: int) -> list[Chunk]:
    """All chunks of ``docs``, in order; none longer than ``min(chunk_tokens, max_tokens)``."""
    size = min(chunk_tokens, max_tokens)
    overlap = min(chunk_overlap, size // 2)
    splitter = _splitter(count_tokens, size, overlap)
    chunks: list[Chunk] = []
    for doc in docs:
        pieces = [(location, text) for location, section in _sections(doc)
                  for text in _fit(splitter, count_tokens, size, section)]
        chunks.extend(_chunk(doc, index, location, text)
                      for index, (location, text) in enumerate(pieces))
    return chunks


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


def _chunk(doc: Document, index: int, location: str, text: str) -> Chunk:
    content_hash = hashlib.sha256(text.encode()).hexdigest()
    key = f"{doc.source}\0{doc.metadata.get('row', '')}\0{index}\0{content_hash}"
    metadata = {"index": index}
    if "row" in doc.metadata:
        metadata["row"] = doc.metadata["row"]
    if doc.metadata.get("title"):
        metadata["title"] = doc.metadata["title"]
    return Chunk(chunk_id=hashlib.sha256(key.encode()).hexdigest()[:16], source=doc.source,
                 text=text, location=location, content_hash=content_hash, metadata=metadata)
