"""The records that pass between the stages of indexing and search."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Document:
    """One loaded document: a file, or one row of a .csv/.jsonl file."""

    source: str
    """Path of the file it came from (plus ``#row`` for one row of a table file)."""
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

    @property
    def source(self) -> str:
        return self.chunk.source

    @property
    def location(self) -> str:
        return self.chunk.location

    @property
    def text(self) -> str:
        return self.chunk.text
