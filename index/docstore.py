"""The SQLite docstore: indexed files and their chunks (text, location, metadata).

A chunk's integer ``id`` is its id in the FAISS index. A committed docstore file is never
modified again (a sync writes the next generation's copy), so readers open it immutable.
"""

from __future__ import annotations

import fnmatch
import json
import sqlite3
from pathlib import Path
from typing import Iterator

import numpy as np

from index.types import Chunk, DocumentInfo

SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    source TEXT PRIMARY KEY, content_hash TEXT NOT NULL, size INTEGER NOT NULL,
    chunks INTEGER NOT NULL, indexed_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY, chunk_id TEXT NOT NULL, source TEXT NOT NULL, location TEXT NOT NULL,
    text TEXT NOT NULL, content_hash TEXT NOT NULL, metadata TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS chunks_source ON chunks(source);
CREATE INDEX IF NOT EXISTS chunks_hash ON chunks(content_hash);
CREATE TABLE IF NOT EXISTS tombstones (id INTEGER PRIMARY KEY);
CREATE TABLE IF NOT EXISTS sentence_vectors (id INTEGER PRIMARY KEY, vectors BLOB NOT NULL);
"""


class Docstore:
    def __init__(self, path: Path, writable: bool = False):
        self.path = path
        if writable:
            self.db = sqlite3.connect(path)
            # A scratch copy until the manifest names it: no journal needed, fsync'd at commit.
            self.db.execute("PRAGMA journal_mode=OFF")
            self.db.execute("PRAGMA synchronous=OFF")
            self.db.executescript(SCHEMA)
        else:
            self.db = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True,
                                      check_same_thread=False)

    def close(self) -> None:
        self.db.close()

    def commit(self) -> None:
        self.db.commit()

    def tables(self) -> set[str]:
        return {name for (name,) in self.db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}

    def file_hashes(self) -> dict[str, str]:
        return dict(self.db.execute("SELECT source, content_hash FROM files"))

    def documents(self) -> list[DocumentInfo]:
        rows = self.db.execute(
            "SELECT source, chunks, indexed_at, content_hash, size FROM files ORDER BY source")
        return [DocumentInfo(*row) for row in rows]

    def count_chunks(self) -> int:
        return self.db.execute("SELECT count(*) FROM chunks").fetchone()[0]

    def add(self, source: str, content_hash: str, size: int, indexed_at: str,
            chunks: list[Chunk], sentence_vectors: list[np.ndarray | None] | None = None
            ) -> np.ndarray:
        """Record a file and its chunks (and each chunk's sentence vectors, float16, where
        given); returns the new chunks' ids, in order."""
        self.db.execute("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?)",
                        (source, content_hash, size, len(chunks), indexed_at))
        # Never reuse the id of a vector still in an HNSW graph (a tombstone).
        start = max(self.db.execute("SELECT max(id) FROM chunks").fetchone()[0] or 0,
                    self.db.execute("SELECT max(id) FROM tombstones").fetchone()[0] or 0) + 1
        ids = np.arange(start, start + len(chunks), dtype=np.int64)
        self.db.executemany(
            "INSERT INTO chunks VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(int(i), c.chunk_id, c.source, c.location, c.text, c.content_hash,
              json.dumps(c.metadata)) for i, c in zip(ids, chunks)])
        if sentence_vectors is not None:
            self.db.executemany(
                "INSERT INTO sentence_vectors VALUES (?, ?)",
                [(int(i), np.asarray(v, np.float16).tobytes())
                 for i, v in zip(ids, sentence_vectors) if v is not None and len(v)])
        return ids

    def remove(self, source: str) -> np.ndarray:
        """Forget a file; returns the ids of the chunks it had."""
        ids = np.fromiter((row[0] for row in self.db.execute(
            "SELECT id FROM chunks WHERE source = ?", (source,))), dtype=np.int64)
        self.db.execute("DELETE FROM sentence_vectors WHERE id IN "
                        "(SELECT id FROM chunks WHERE source = ?)", (source,))
        self.db.execute("DELETE FROM chunks WHERE source = ?", (source,))
        self.db.execute("DELETE FROM files WHERE source = ?", (source,))
        return ids

    def bury(self, ids: np.ndarray) -> None:
        """Mark vectors that stay in the FAISS index but must never be returned."""
        self.db.executemany("INSERT OR IGNORE INTO tombstones VALUES (?)", [(int(i),) for i in ids])

    def tombstones(self) -> np.ndarray:
        return np.fromiter((r[0] for r in self.db.execute("SELECT id FROM tombstones")),
                           dtype=np.int64)

    def clear_tombstones(self) -> None:
        self.db.execute("DELETE FROM tombstones")

    def ids_by_hash(self, source: str) -> dict[str, int]:
        """Content hash -> chunk id for one file's chunks, to reuse their vectors."""
        return dict(self.db.execute(
            "SELECT content_hash, id FROM chunks WHERE source = ?", (source,)))

    def chunks(self, ids: list[int]) -> dict[int, Chunk]:
        return {row[0]: Chunk(*row[1:6], metadata=json.loads(row[6])) for row in self._by_id(
            "chunks", "chunk_id, source, text, location, content_hash, metadata", ids)}

    def sentence_vectors(self, ids: list[int], dimension: int) -> dict[int, np.ndarray]:
        """Chunk id -> its sentences' vectors (float16 rows) for the ``ids`` that have any."""
        return {chunk_id: np.frombuffer(blob, np.float16).reshape(-1, dimension)
                for chunk_id, blob in self._by_id("sentence_vectors", "vectors", ids)}

    def _by_id(self, table: str, columns: str, ids: list[int]) -> Iterator[tuple]:
        """``(id, *columns)`` of the rows of ``table`` with those ids, 500 ids a query."""
        for start in range(0, len(ids), 500):
            batch = [int(i) for i in ids[start:start + 500]]
            marks = ",".join("?" * len(batch))
            yield from self.db.execute(f"SELECT id, {columns} FROM {table} WHERE id IN ({marks})",
                                       batch)

    def all_chunks(self) -> tuple[np.ndarray, list[Chunk]]:
        """Every chunk with its id, in id order (what BM25 indexes)."""
        rows = self.db.execute(
            "SELECT id, chunk_id, source, text, location, content_hash, metadata "
            "FROM chunks ORDER BY id").fetchall()
        return (np.array([r[0] for r in rows], dtype=np.int64),
                [Chunk(*r[1:6], metadata=json.loads(r[6])) for r in rows])

    def ids_matching(self, pattern: str) -> np.ndarray:
        """Ids of the chunks whose source matches a glob (``*.pdf``, ``docs/guide/*``)."""
        sources = [s for (s,) in self.db.execute("SELECT source FROM files")
                   if fnmatch.fnmatch(s, pattern) or fnmatch.fnmatch(s, "*/" + pattern)]
        ids: list[int] = []
        for source in sources:
            ids.extend(r[0] for r in self.db.execute(
                "SELECT id FROM chunks WHERE source = ?", (source,)))
        return np.array(sorted(ids), dtype=np.int64)
