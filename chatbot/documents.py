"""The bot's documents as the web UI's Documents tab and the engine see them.

One embedder is loaded once and shared by uploads, searches in the tab and the engine's
retrieval; the retriever is opened lazily, so documents indexed after the server started
are found without a restart.

    chatbot serve        # the Documents tab uses app.build.bot_documents(config)
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from chatbot import indexing
from chatbot.errors import DocumentIndexError
from index.search import Retriever
from index.sync import SyncReport
from index.types import DocumentInfo, Hit


class BotDocuments:
    """The bot's index; uploads are kept in ``upload_dir``."""

    def __init__(self, index: indexing.BotIndex, upload_dir: Path, embedder=None) -> None:
        self.index = index
        self.upload_dir = upload_dir
        self._embedder = embedder
        self._retriever: Retriever | None = None
        self._lock = threading.Lock()

    @property
    def embedder(self):
        with self._lock:
            if self._embedder is None:
                self._embedder = indexing.open_embedder(self.index.embedder)
            return self._embedder

    def sync(self, paths: Sequence[Path],
             progress: Callable[[int, int, str], None] | None = None,
             waiting: Callable[[], None] | None = None,
             embedding: Callable[[int, int], None] | None = None) -> SyncReport:
        return indexing.sync_paths(self.index, list(paths), progress=progress,
                                   embedder=self.embedder, waiting=waiting, embedding=embedding)

    def list(self) -> list[DocumentInfo]:
        """The indexed files, each under the name the bot shows it by."""
        names = self.index.names
        return [replace(doc, source=names.name(doc.source))
                for doc in indexing.list_documents(self.index)]

    def remove(self, name: str, waiting: Callable[[], None] | None = None) -> list[str]:
        """Drop the indexed file shown as ``name`` (see ``list``), and its file if it was a web
        UI upload; returns its name. ``waiting()`` is called if a sync holds the index."""
        names = self.index.names
        sources = [doc.source for doc in indexing.list_documents(self.index)
                   if names.name(doc.source) == name]
        if not sources:
            raise DocumentIndexError(f"{name} is not indexed; pick one of the listed documents")
        for source in sources:
            indexing.remove_documents(self.index, source, waiting)
        return [name] * len(sources)

    @indexing.index_errors  # damage met following a sync's generation: the reason, not a 500
    def search(self, query: str, k: int, mode: str) -> list[Hit]:
        retriever = self.retriever()
        return self.index.names.hits(retriever.search(query, k=k, mode=mode) if retriever else [])

    @indexing.index_errors
    def hits(self, query: str, k: int) -> list[Hit]:
        """The engine's ``search(query, k)``: the config's retrieval mode and threshold."""
        retriever = self.retriever()
        return self.index.names.hits(retriever.search(query, k=k) if retriever else [])

    def retriever(self) -> Retriever | None:
        """The open retriever, or ``None`` while nothing is indexed (tried again each call)."""
        if self._retriever is None:
            retriever = indexing.open_retriever(self.index, embedder=self.embedder)
            with self._lock:
                self._retriever = self._retriever or retriever
        return self._retriever
