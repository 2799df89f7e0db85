"""The records that pass between the stages of indexing and search."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Document:
    """One loaded document: a file, or one row of a .csv/.jsonl file."""

    source: str
    """Path of the file it came from (a row of a .csv/.jsonl file has ``metadata["row"]``)."""
    text: str
    metadata: dict = field(default_factory=dict)
    """Format-specific facts: ``pages`` (list of (offset, page number)) for PDFs, ``title``..."""


@dataclass(frozen=True)
class Chunk:
    """A piece of a document small enough for the embedder to read whole."""

    chunk_id: str
    source: str
    text: str
    location: str
    """Where in the source: ``page 3``, a heading path ``Install > Linux``, or ``row 12``."""
    content_hash: str
    metadata: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Hit:
    """A chunk returned by a search, with its score (higher is better)."""

    chunk: Chunk
    score: float
    rank: int
    scores: dict = field(default_factory=dict)
    """Each retriever's own score, e.g. ``{"dense": 0.71, "bm25": 9.2}``; ``score`` is the fused one."""

    @property
    def source(self) -> str:
        return self.chunk.source

    @property
    def location(self) -> str:
        return self.chunk.location

    @property
    def text(self) -> str:
        return self.chunk.text


@dataclass(frozen=True)
class DocumentInfo:
    """One indexed file as ``chatbot index list`` shows it."""

    source: str
    chunks: int
    indexed_at: str
    """UTC time of the sync that last (re)indexed it, ISO 8601."""
    content_hash: str = ""
    size: int = 0
