"""Incremental sync of files and folders into a :class:`Store`.

A file whose bytes hash as before is not even parsed; a changed one is re-chunked, and only its
chunks with new text are embedded again; a file gone from a synced folder, or from disk, loses
its chunks. A file that fails to load is reported with the reason and keeps what was indexed
before. A rebuild re-indexes every file the index held, wherever it was synced from.

    chatbot index sync docs/ more-docs/manual.pdf
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from index.chunk import chunk_documents
from index.context import indexed_text
from index.embed import Embedder
from index.errors import IndexMismatchError, LoadError
from index import manifest
from index.load import LoadFailure, broken_link, discover, load_file, read_bytes
from index.manifest import REBUILD, IndexSettings
from index.sentence_vectors import encode_sentences
from index.store import Store
from index.text import shown
from index.types import Chunk

Progress = Callable[[int, int, str], None]
"""Called after each file: (files done, files in all, that file's path); first as
(0, files in all, "") once they are listed; the last file after its chunks are embedded."""

Embedding = Callable[[int, int], None]
"""Called as chunks are embedded: (chunks embedded, chunks that this batch of files embeds)."""

FLUSH_CHUNKS = 1024  # encode this many chunks at once: sentence-transformers sorts them by length
EMBED_SLICE = 256
"""Chunks per ``encode`` call inside a flush, progress reported after each: one 300-page PDF is
minutes of embedding. The chunks are sorted by length first, as sentence-transformers sorts
one call's, so the slices pad no more than one call of them all would."""


@dataclass
class SyncReport:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    failed: list[LoadFailure] = field(default_factory=list)
    chunks: int = 0
    """Chunks written for added and updated files."""
    embedded: int = 0
    """Of those, chunks that were encoded (the rest kept their vectors: same text as before)."""
    sentences: int = 0
    """Sentences of the encoded chunks embedded on their own (``index.sentence_vectors``)."""
    seconds: float = 0.0
    held_unknown: bool = False
    """A rebuild could not read which files the old index held, so those outside the synced
    paths (uploads, files synced by name) were not re-indexed."""

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        one = self.chunks == 1
        return (f"{len(self.added)} added, {len(self.updated)} updated, "
                f"{len(self.unchanged)} unchanged, {len(self.removed)} removed, "
                f"{len(self.failed)} failed; {self.chunks} chunk{'' if one else 's'} written "
                f"({self.embedded} embedded"
                + (f", with {self.sentences} of {'its' if one else 'their'} sentences"
                   if self.sentences else "")
                + f") in {self.seconds:.1f} s")


@dataclass
class _Pending:
    """Files read and chunked, waiting for one batched encode."""

    files: list[tuple[str, str, int, list[Chunk], dict]] = field(default_factory=list)
    chunks: int = 0


def sync(paths: list[str | Path], store: Store, embedder: Embedder, *,
         include: list[str] = ("**/*",), exclude: list[str] = (), max_file_bytes: int = 50 << 20,
         text_field: str = "text", progress: Progress | None = None,
         rebuild: IndexSettings | None = None,
         waiting: Callable[[], None] | None = None,
         embedding: Embedding | None = None) -> SyncReport:
    """Bring ``store`` in line with the files under ``paths``; one atomic commit at the end.

    ``rebuild`` (settings) re-indexes everything from scratch with those settings;
    ``waiting()`` is called if another sync holds the index (this one waits for it);
    ``embedding(done, total)`` as chunks are embedded.
    """
    start = time.perf_counter()
    paths = [Path(p) for p in paths]
    with store.transaction(rebuild=rebuild, waiting=waiting):
        if store.settings.embedder != embedder.name:
            raise IndexMismatchError(f"{shown(store.directory)}: built with embedder "
                                     f"{store.settings.embedder!r}, not {embedder.name!r}; {REBUILD}")
        # read under the lock: a sync this one waited for may have added files (an upload)
        before = (_held_before(store.directory) if rebuild is not None
                  else ([], store.manifest.folders))
        report = SyncReport(held_unknown=before is None)
        held, recorded = before or ([], ())
        roots = [os.path.abspath(p) for p in paths]
        folders = [*recorded, *(root for root in roots if os.path.isdir(root))]
        # a rebuild re-indexes what the index held outside the paths too (uploads, single files)
        paths += [Path(source) for source in held
                  if not under(source, roots) and os.path.exists(source)]
        files, failures = discover(paths, list(include), list(exclude))
        report.failed += failures
        # a file that failed keeps what was indexed from it, and so does an unreadable folder
        unread = [f.source for f in failures if f.folder]
        seen = ({str(p) for p in files} | {f.source for f in failures}
                | ({source for source in store.hashes if under(source, unread)} if unread
                   else set()))
        _remove_missing(store, roots, seen, report)
        report.removed += [source for source in held if source not in seen]
        pending = _Pending()
        if progress is not None:  # the total shows while the first (a 300-page PDF) is read
            progress(0, len(files), "")
        for done, path in enumerate(files, start=1):
            _visit(path, store, embedder, max_file_bytes, text_field, pending, report)
            # the last file is embedded before it counts: "1/1" while a large one embeds
            # looked finished
            if pending.chunks >= FLUSH_CHUNKS or done == len(files):
                _flush(store, embedder, pending, report, embedding)
            if progress is not None:
                progress(done, len(files), str(path))
        keep_folders_holding_files(store, folders)
    report.seconds = time.perf_counter() - start
    return report


def _held_before(directory: Path) -> tuple[list[str], tuple[str, ...]] | None:
    """The files and the synced folders the committed index holds, from its manifest: a
    rebuild is how an index with a missing or damaged FAISS, docstore or BM25 file is mended.
    ``None`` where the manifest itself can't be read."""
    try:
        state = manifest.read(directory)
    except IndexMismatchError:
        return None
    return (list(state.documents), state.folders) if state else ([], ())


def keep_folders_holding_files(store: Store, folders: list[str] | tuple[str, ...]) -> None:
    """Record the synced ``folders`` (a sync's and those recorded before) that hold an indexed
    file: the bot names a file under one from it, as it names one under ``index.paths``."""
    kept = tuple(sorted({folder for folder in folders
                         if any(under(source, [folder]) for source in store.hashes)}))
    if kept != store.manifest.folders:
        store.record_folders(kept)


def under(source: str, roots: list[str]) -> bool:
    """Whether the file ``source`` is one of ``roots`` or inside one (absolute paths)."""
    return any(source == root or source.startswith(root.rstrip(os.sep) + os.sep)
               for root in roots)


def _remove_missing(store: Store, roots: list[str], seen: set[str], report: SyncReport) -> None:
    """Drop indexed files under the synced paths that this sync did not ``seen``, and indexed
    files anywhere that are gone from disk (a synced folder renamed or deleted)."""
    for source in list(store.hashes):
        if source not in seen and (under(source, roots) or not os.path.exists(source)):
            store.remove(source)
            report.removed.append(source)


def _visit(path: Path, store: Store, embedder: Embedder, max_file_bytes: int, text_field: str,
           pending: _Pending, report: SyncReport) -> None:
    source = str(path)
    try:
        data = read_bytes(path, max_file_bytes)
        content_hash = hashlib.sha256(data).hexdigest()
        if store.hashes.get(source) == content_hash:
            report.unchanged.append(source)
            return
        docs = load_file(path, data, text_field)
    except LoadError as exc:
        report.failed.append(LoadFailure(source, exc.reason))
        return
    except FileNotFoundError:
        _gone(path, store, report)
        return
    settings = store.settings
    chunks = chunk_documents(docs, embedder.count_tokens, embedder.max_tokens,
                             settings.chunk_tokens, settings.chunk_overlap)
    (report.updated if source in store.hashes else report.added).append(source)
    pending.files.append((source, content_hash, len(data), chunks,
                          store.reusable_vectors(source)))
    pending.chunks += len(chunks)


def _gone(path: Path, store: Store, report: SyncReport) -> None:
    """A file deleted after its folder was listed (moved away, an editor's temporary file saved
    over its original) is gone as if deleted before the sync: it failed the sync, and its
    chunks stayed searchable after it. A link whose target went is what ``discover`` calls a
    broken link: reported, and what was indexed from it kept."""
    source = str(path)
    try:
        report.failed.append(broken_link(path))
        return
    except OSError:  # not a link, or the link went too
        pass
    if source in store.hashes:
        store.remove(source)
        report.removed.append(source)


def _flush(store: Store, embedder: Embedder, pending: _Pending, report: SyncReport,
           embedding: Embedding | None) -> None:
    """Encode what the pending files need (their sentences too, where the index keeps sentence
    vectors), then write them to the store."""
    todo = [chunk for _, _, _, chunks, reuse in pending.files
            for chunk in chunks if chunk.content_hash not in reuse]
    encoded = _encode(store.settings, embedder, todo, embedding)
    fresh = iter(encoded)
    for source, content_hash, size, chunks, reuse in pending.files:
        embedded = [reuse[c.content_hash] if c.content_hash in reuse else next(fresh)
                    for c in chunks]
        store.remove(source)
        store.add(source, content_hash, size, chunks,
                  np.stack([vector for vector, _ in embedded]) if embedded
                  else np.zeros((0, 1), np.float32),
                  [sentences for _, sentences in embedded])
        report.chunks += len(chunks)
    report.embedded += len(todo)
    report.sentences += sum(len(rows) for _, rows in encoded if rows is not None)
    pending.files.clear()
    pending.chunks = 0


def _encode(settings: IndexSettings, embedder: Embedder, todo: list[Chunk],
            embedding: Embedding | None) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """(vector, sentence vectors or ``None``) of each chunk of ``todo``, in its order, encoded
    ``EMBED_SLICE`` chunks at a time, longest first."""
    texts = [indexed_text(chunk, settings.context) for chunk in todo]
    order = sorted(range(len(todo)), key=lambda i: -len(texts[i]))
    encoded: list = [None] * len(todo)
    for start in range(0, len(order), EMBED_SLICE):
        part = order[start:start + EMBED_SLICE]
        vectors = embedder.encode([texts[i] for i in part])
        rows = (encode_sentences(embedder, [todo[i].text for i in part])
                if settings.sentence_vectors else [None] * len(part))
        for i, vector, sentences in zip(part, vectors, rows):
            encoded[i] = (vector, sentences)
        if embedding is not None:
            embedding(start + len(part), len(todo))
    return encoded
