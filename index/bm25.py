"""BM25 over chunk texts with bm25s: built once per sync, saved beside the FAISS index,
loaded (memory-mapped) for queries and never rebuilt per query.

    chatbot index search "how do I renew" --mode bm25
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import numpy as np

_WORD = re.compile(r"\w+")
IDS_FILE = "chunk_ids.npy"


def tokenize(text: str) -> list[str]:
    """Lower-case words without English stop words; the same for chunks and queries."""
    stop = _stopwords()
    return [word for word in _WORD.findall(text.lower()) if word not in stop]


@functools.cache
def _stopwords() -> frozenset[str]:
    from bm25s.stopwords import STOPWORDS_EN

    return frozenset(STOPWORDS_EN)


def build(texts: list[str], ids: np.ndarray, directory: Path) -> None:
    """Index ``texts`` (row ``i`` is chunk ``ids[i]``) and save it into ``directory``."""
    import bm25s

    directory.mkdir(parents=True, exist_ok=True)
    np.save(directory / IDS_FILE, np.asarray(ids, dtype=np.int64))
    if not texts:
        return
    retriever = bm25s.BM25()
    # An empty token list would make bm25s fail; "" keeps such a chunk indexable (and unmatched).
    retriever.index([tokenize(text) or [""] for text in texts], show_progress=False)
    retriever.save(str(directory), show_progress=False)


class BM25Index:
    """A saved BM25 index: ``scores(query)`` for every chunk, and the chunk ids in order."""

    def __init__(self, directory: Path):
        self.ids = np.load(directory / IDS_FILE)
        self._retriever = None
        if len(self.ids):
            import bm25s

            self._retriever = bm25s.BM25.load(str(directory), mmap=True, show_progress=False)

    def scores(self, query: str) -> np.ndarray:
        """The BM25 score of every chunk (aligned with ``ids``) for ``query``."""
        if self._retriever is None:
            return np.zeros(0, dtype=np.float32)
        known = [t for t in tokenize(query) if t in self._retriever.vocab_dict]
        if not known:
            return np.zeros(len(self.ids), dtype=np.float32)
        return np.asarray(self._retriever.get_scores(known), dtype=np.float32)
