"""An index directory: FAISS vectors + SQLite docstore + BM25, under one manifest.

Each sync writes a new *generation* of the three (``faiss-000007.index``,
``docstore-000007.sqlite``, ``bm25-000007/``) and then replaces ``manifest.json`` atomically to
name them; a sync killed at any moment leaves the previous generation in force. A file lock
(``.lock``) serializes writers; readers never wait.

    chatbot index stats --json
"""

from __future__ import annotations

import contextlib
import shutil
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Callable, Iterator, Mapping, TypeVar

import numpy as np

from index import bm25, faiss_kinds, jsonfile, manifest, store_files
from index.context import indexed_text
from index.docstore import Docstore
from index.errors import IndexDamagedError, IndexMismatchError, IndexMissingError
from index.generation_files import file_name, files_of, now, remove_stale, stamp
from index.manifest import IndexCounts, IndexFiles, IndexManifest, IndexSettings
from index.text import shown
from index.types import Chunk, DocumentInfo
from index.writer_lock import writer_lock

T = TypeVar("T")

TOMBSTONE_SHARE = 0.2
"""HNSW can't delete: removed vectors are filtered out until they are this share of the graph,
then the graph is rebuilt without them."""


class Store:
    """Open with :meth:`open`; read with ``search``/``chunks``; write inside :meth:`transaction`."""

    def __init__(self, directory: Path, state: IndexManifest,
                 expected: IndexSettings | None = None):
        self.directory = Path(directory)
        self._adopt(state)
        self.expected = expected
        """The settings a sync applies: index type and HNSW degree convert the index in place."""
        self._stamp = stamp(self.directory / manifest.MANIFEST)
        self._faiss = self._docstore = self._bm25 = None
        self._tombstones: np.ndarray | None = None
        self._dirty = False

    @classmethod
    def open(cls, directory: str | Path, settings: IndexSettings | None = None,
             create: bool = False) -> Store:
        """The index at ``directory``, checked against ``settings`` (``None`` skips the check)."""
        directory = Path(directory)
        state = manifest.read(directory)
        if state is None:
            if not create or settings is None:
                raise IndexMissingError(f"no index at {shown(directory)} yet; build one: "
                                        "chatbot index sync PATH")
            return cls(directory, IndexManifest(settings), settings)
        state = store_files.in_force(directory, state)
        state.check(directory, settings)
        return cls(directory, state, settings)

    # --------------------------------------------------------------------- reading

    @property
    def settings(self) -> IndexSettings:
        return self.manifest.settings

    @property
    def hashes(self) -> Mapping[str, str]:
        """Source -> content hash of every indexed file, with the open transaction's changes."""
        return MappingProxyType(self._documents)

    @property
    def docstore(self) -> Docstore:
        if self._docstore is None:
            name = self.manifest.files.docstore
            self._docstore = (store_files.open_docstore(self.directory, name) if name
                              else Docstore(Path(":memory:"), writable=True))
        return self._docstore

    @property
    def faiss(self):
        """The FAISS index (an ``IndexIDMap2``), or ``None`` while the index holds no vectors."""
        if self._faiss is None and self.manifest.files.faiss:
            self._faiss = store_files.read_faiss(self.directory, self.manifest.files.faiss)
        return self._faiss

    @property
    def bm25(self) -> bm25.BM25Index | None:
        if self._bm25 is None and self.manifest.files.bm25:
            self._bm25 = store_files.open_bm25(self.directory, self.manifest.files.bm25,
                                               self.settings.bm25_analyzer)
        return self._bm25

    def verify(self) -> Store:
        """Open every file of the generation now (the FAISS index is read whole), so that a
        missing or damaged one is an :class:`IndexDamagedError` here, not a failure halfway
        through a search or a sync; nothing is left open when one is. Returns the store."""
        try:
            self.docstore, self.faiss, self.bm25  # noqa: B018
        except IndexDamagedError:
            self._close()
            raise
        return self

    def moved_on(self) -> bool:
        """Whether a sync has committed since this store was opened: one ``stat`` (the manifest
        is replaced, never edited, so a new inode means a new generation)."""
        return stamp(self.directory / manifest.MANIFEST) != self._stamp

    def next_generation(self) -> Store:
        """A new store on the generation in force, every file open. This one stays open:
        searches still reading it end on its files while the sync removes them from the
        folder; closing it under them crashed SQLite.

        A rebuild with other chunking, context or sentence vectors is followed: searches read
        those from the generation they search. Only its vectors must still come from the
        embedder this process embeds queries with."""
        fresh = read_in_force(self.directory, Store.verify)
        was, now = self.settings, fresh.settings
        same_vectors = now.embedder == was.embedder and (
            None in (now.dimension, was.dimension) or now.dimension == was.dimension)
        if not same_vectors:
            raise IndexMismatchError(
                f"{self.directory / manifest.MANIFEST}: rebuilt with embedder {now.embedder!r} "
                f"({now.dimension}-d) while this running bot searches with {was.embedder!r} "
                f"({was.dimension}-d); restart it with the config the index was built from")
        return fresh

    def documents(self) -> list[DocumentInfo]:
        return self.docstore.documents()

    def chunks(self, ids) -> dict[int, Chunk]:
        return self.docstore.chunks(list(ids))

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None,
               ef_search: int = 128) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` (scores, ids) per query row by inner product; id -1 pads short results."""
        import faiss

        index = self.faiss
        if index is None or index.ntotal == 0 or (allowed is not None and not len(allowed)):
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        if queries.shape[1] != index.d:
            raise IndexMismatchError(f"query vectors have {queries.shape[1]} dimensions, the "
                                     f"index {index.d}; {manifest.REBUILD}")
        selector = faiss.IDSelectorBatch(allowed) if allowed is not None else None
        if self.kind == "hnsw":
            buried = self.tombstones()
            if selector is None and len(buried):
                inner = faiss.IDSelectorBatch(buried)  # kept alive by this frame during search
                selector = faiss.IDSelectorNot(inner)
            params = faiss.SearchParametersHNSW(efSearch=max(ef_search, k), sel=selector)
        else:
            params = faiss.SearchParameters(sel=selector)
        queries = np.ascontiguousarray(queries, np.float32)
        if len(queries) > 1:
            return index.search(queries, k, params=params)
        # One query gains nothing from OpenMP threads and pays for waking them: on a busy
        # 2-core machine an HNSW search of 100k vectors took 32 ms with two, 1.5 ms with one
        # (benchmarks/bench_retrieval_latency.py). The setting is this thread's own.
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        try:
            return index.search(queries, k, params=params)
        finally:
            faiss.omp_set_num_threads(threads)

    @property
    def kind(self) -> str:
        """The FAISS index in use: ``flat`` or ``hnsw`` (``auto`` picks one by size)."""
        return self.manifest.faiss_type or faiss_kinds.concrete(self.settings.index_type, 0)

    def tombstones(self) -> np.ndarray:
        if self._tombstones is None:
            self._tombstones = self.docstore.tombstones()
        return self._tombstones

    def vectors(self, ids) -> np.ndarray:
        index = self.faiss
        return np.stack([index.reconstruct(int(i)) for i in ids]) if len(ids) else np.zeros(
            (0, self.settings.dimension or 0), np.float32)

    def stats(self) -> dict:
        size = sum(p.stat().st_size for name in self.manifest.files.names()
                   for p in files_of(self.directory / name))
        settings = self.settings
        return {"directory": str(self.directory), "documents": len(self.manifest.documents),
                "chunks": self.manifest.counts.chunks,
                "embedder": settings.embedder, "dimension": settings.dimension,
                "index_type": settings.index_type, "faiss_type": self.kind,
                "context": settings.context, "bm25_analyzer": settings.bm25_analyzer,
                "sentence_vectors": settings.sentence_vectors,
                "tombstones": len(self.tombstones()), "generation": self.manifest.generation,
                "updated_at": self.manifest.updated_at, "size_bytes": size}

    # --------------------------------------------------------------------- writing

    @contextlib.contextmanager
    def transaction(self, rebuild: IndexSettings | None = None,
                    waiting: Callable[[], None] | None = None) -> Iterator[Store]:
        """Hold the writer lock, stage a new generation, commit it if the block succeeds.

        ``rebuild`` starts from an empty index with those settings (the way to change the
        embedder or the chunking: both need every chunk embedded again); ``waiting()`` is
        called if another sync holds the lock.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        with writer_lock(self.directory, waiting):
            self._begin(rebuild)
            try:
                yield self
                self._commit()
            except BaseException:  # a Ctrl-C or a full disk while committing included
                self._abort()
                raise

    def add(self, source: str, content_hash: str, size: int, chunks: list[Chunk],
            vectors: np.ndarray, sentence_vectors: list[np.ndarray] | None = None) -> None:
        """``sentence_vectors``: each chunk's (``index/sentence_vectors.py``), where the index
        keeps them."""
        if len(chunks) != len(vectors):
            raise ValueError(f"{len(chunks)} chunks but {len(vectors)} vectors for {source}")
        ids = self.docstore.add(source, content_hash, size, now(), chunks, sentence_vectors)
        if len(ids):
            self._ensure_faiss(vectors.shape[1])
            self._faiss.add_with_ids(np.ascontiguousarray(vectors, np.float32), ids)
        self._documents[source] = content_hash
        self._dirty = True

    def remove(self, source: str) -> int:
        """Drop a file's chunks; returns how many there were."""
        ids = self.docstore.remove(source)
        if self._documents.pop(source, None) is not None:
            self._dirty = True
        # Applied at commit, once: removing from a flat index moves every vector after the hole.
        self.docstore.bury(ids)
        return len(ids)

    def record_folders(self, folders: tuple[str, ...]) -> None:
        """Set ``IndexManifest.folders``: committed even where no file changed."""
        self.manifest, self._dirty = replace(self.manifest, folders=folders), True

    def reusable_vectors(self, source: str) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
        """Content hash -> (vector, sentence vectors or ``None``) of a file's current chunks,
        so unchanged chunks skip encoding."""
        by_hash = self.docstore.ids_by_hash(source)
        if not by_hash or self.faiss is None:
            return {}
        sentences = self.sentence_vectors(by_hash.values())
        return {content_hash: (vector, sentences.get(chunk_id)) for (content_hash, chunk_id), vector
                in zip(by_hash.items(), self.vectors(list(by_hash.values())))}

    def sentence_vectors(self, ids) -> dict[int, np.ndarray]:
        """Chunk id -> its sentences' vectors, for the ``ids`` that have any."""
        if not self.settings.sentence_vectors or not self.settings.dimension:
            return {}
        return self.docstore.sentence_vectors(list(ids), self.settings.dimension)

    def _ensure_faiss(self, dimension: int) -> None:
        expected = self.settings.dimension
        if expected not in (None, dimension):
            raise IndexMismatchError(f"{shown(self.directory)}: the index holds {expected}-d "
                                     f"vectors, the embedder makes {dimension}-d; "
                                     f"{manifest.REBUILD}")
        self.manifest = self.manifest.with_settings(dimension=dimension)
        if self.faiss is None:
            self._faiss = faiss_kinds.new_index(self.kind, dimension, self.settings.hnsw_m)

    def _begin(self, rebuild: IndexSettings | None) -> None:
        self._close()
        self._dirty = rebuild is not None
        latest = self._committed(rebuilding=rebuild is not None)
        remove_stale(self.directory, latest.files if latest else IndexFiles())
        if rebuild is not None or latest is None:
            self._adopt(IndexManifest(rebuild or self.settings,
                                      generation=latest.generation if latest else 0))
        else:
            latest.check(self.directory, self.expected or self.settings)
            converted = {key: getattr(self.expected, key)
                         for key in manifest.CONVERTIBLE if self.expected}
            self._adopt(latest.with_settings(**converted))
            # committed even if no file changed: _reshape converts
            self._dirty = self.settings != latest.settings
            # A damaged generation refuses the sync before anything is staged (an unchanged
            # sync would otherwise report it as fine). The FAISS index stays loaded: it is
            # modified in place.
            self.verify()
            self._docstore.close()
            self._docstore = None
        self._docstore = self._stage_docstore()

    def _committed(self, rebuilding: bool) -> IndexManifest | None:
        """The committed manifest. A rebuild replaces it, so for a rebuild one that can't be
        read counts as none: the error's own advice is to rebuild."""
        try:
            return manifest.read(self.directory)
        except IndexMismatchError:
            if not rebuilding:
                raise
            return None

    def _stage_docstore(self) -> Docstore:
        """A writable copy of the docstore for the next generation; removed if making it fails."""
        staged = self.directory / file_name("docstore", self.manifest.generation + 1, ".sqlite")
        try:
            if self.manifest.files.docstore:
                shutil.copyfile(self.directory / self.manifest.files.docstore, staged)
            return Docstore(staged, writable=True)
        except BaseException:
            staged.unlink(missing_ok=True)
            raise

    def _abort(self) -> None:
        """Back to the generation the manifest names (this one's, if its commit got that far),
        without the files staged for another: they may be as large as the index."""
        self._close()
        committed = self._committed(rebuilding=True)
        self._adopt(committed or self.manifest)
        remove_stale(self.directory, committed.files if committed else IndexFiles())

    def _commit(self) -> None:
        if not self._dirty:
            self._abort()
            return
        import faiss

        generation = self.manifest.generation + 1
        docstore = self._docstore
        files = IndexFiles(docstore.path.name, None, file_name("bm25", generation, ""))
        self._reshape(docstore)
        ids, chunks = docstore.all_chunks()
        docstore.commit()
        docstore.close()
        jsonfile.fsync_path(docstore.path)
        if self._faiss is not None:
            files = replace(files, faiss=file_name("faiss", generation, ".index"))
            faiss.write_index(self._faiss, str(self.directory / files.faiss))
            jsonfile.fsync_path(self.directory / files.faiss)
        texts = [indexed_text(chunk, self.settings.context) for chunk in chunks]
        bm25.build(texts, ids, self.directory / files.bm25, self.settings.bm25_analyzer)
        for path in files_of(self.directory / files.bm25):
            jsonfile.fsync_path(path)
        self._adopt(replace(self.manifest, generation=generation, files=files,
                            documents=self._documents, faiss_type=self.kind, updated_at=now(),
                            counts=IndexCounts(len(self._documents), len(ids))))
        self.manifest.save(self.directory)  # the commit point
        self._close()
        remove_stale(self.directory, files)

    def _reshape(self, docstore: Docstore) -> None:
        """Drop tombstones once they are many; switch flat <-> HNSW when ``auto`` says so."""
        if self._faiss is None:
            return
        buried = docstore.tombstones()
        live = self._faiss.ntotal - len(buried)
        kind = faiss_kinds.concrete(self.settings.index_type, live, self.kind)
        degree = faiss_kinds.hnsw_degree(self._faiss)
        if (kind != self.kind or len(buried) > TOMBSTONE_SHARE * self._faiss.ntotal
                or (kind == "hnsw" and degree != self.settings.hnsw_m)):
            self._faiss = faiss_kinds.rebuilt(self._faiss, buried, kind, self.settings.hnsw_m)
            docstore.clear_tombstones()
            self.manifest = replace(self.manifest, faiss_type=kind)
        elif kind == "flat" and len(buried):
            self._faiss.remove_ids(buried)
            docstore.clear_tombstones()

    def _adopt(self, state: IndexManifest) -> None:
        """Make ``state`` current; ``add`` and ``remove`` edit a copy of its documents, written
        into the manifest at commit."""
        self.manifest = state
        self._documents = dict(state.documents)

    def _close(self) -> None:
        if self._docstore is not None:
            self._docstore.close()
        self._faiss = self._docstore = self._bm25 = self._tombstones = None


def read_in_force(directory: str | Path, read: Callable[[Store], T],
                  settings: IndexSettings | None = None) -> T:
    """``read(store)`` of the generation in force. A sync committing meanwhile removes the
    older generation's files as they are opened: the read is done again on the new one,
    instead of failing as if the index were damaged."""
    path = Path(directory) / manifest.MANIFEST
    while True:
        seen = stamp(path)
        try:
            store = Store.open(directory, settings)
            store._stamp = seen  # as read before the manifest: a commit since is seen next time
            return read(store)
        except (IndexDamagedError, FileNotFoundError):
            if stamp(path) == seen:
                raise
