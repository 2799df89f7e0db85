"""BM25 over chunk texts with bm25s: built once per sync, saved beside the FAISS index,
loaded (memory-mapped) for queries and never rebuilt per query.

Text is *analyzed* into terms the same way for chunks and queries; the analyzer is recorded in
the index manifest, so an index is always queried with the analyzer that built it:

- ``stopwords``: lower-case words without English stop words (indexes built before stemming);
- ``english``: the same words, Snowball-stemmed (``renewing`` and ``renewal`` both match
  ``renew``), with the pure-Python snowballstemmer.

    chatbot index search "how do I renew" --mode bm25
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Callable

import numpy as np

_WORD = re.compile(r"\w+")
IDS_FILE = "chunk_ids.npy"
STOPWORDS, ENGLISH = "stopwords", "english"
ANALYZERS = (STOPWORDS, ENGLISH)


def analyze(text: str, analyzer: str = ENGLISH) -> list[str]:
    """The terms of ``text``; the same function for chunks and queries."""
    stop = _stopwords()
    words = [word for word in _WORD.findall(text.lower()) if word not in stop]
    return [_stemmer(analyzer)(word) for word in words]


@functools.cache
def _stopwords() -> frozenset[str]:
    from bm25s.stopwords import STOPWORDS_EN

    return frozenset(STOPWORDS_EN)


@functools.cache
def _stemmer(analyzer: str) -> Callable[[str], str]:
    if analyzer == STOPWORDS:
        return str
    if analyzer != ENGLISH:
        raise ValueError(f"unknown BM25 analyzer {analyzer!r}; use one of {', '.join(ANALYZERS)}")
    import snowballstemmer

    # Cached per word: a corpus repeats its vocabulary, and the pure-Python stemmer is slow.
    return functools.lru_cache(maxsize=1 << 18)(snowballstemmer.stemmer("english").stemWord)


def build(texts: list[str], ids: np.ndarray, directory: Path, analyzer: str) -> None:
    """Index ``texts`` (row ``i`` is chunk ``ids[i]``) and save it into ``directory``."""
    import bm25s

    directory.mkdir(parents=True, exist_ok=True)
    np.save(directory / IDS_FILE, np.asarray(ids, dtype=np.int64))
    if not texts:
        return
    retriever = bm25s.BM25()
    # An empty token list would make bm25s fail; "" keeps such a chunk indexable (and unmatched).
    retriever.index([analyze(text, analyzer) or [""] for text in texts], show_progress=False)
    retriever.save(str(directory), show_progress=False)


class BM25Index:
    """A saved BM25 index: ``scores(query)`` for every chunk, and the chunk ids in order."""

    def __init__(self, directory: Path, analyzer: str):
        self.ids = np.load(directory / IDS_FILE)
        self.analyzer = analyzer
        self._retriever = None
        if len(self.ids):
            import bm25s

            self._retriever = bm25s.BM25.load(str(directory), mmap=True, show_progress=False)

    def scores(self, query: str) -> np.ndarray:
        """The BM25 score of every chunk (aligned with ``ids``) for ``query``."""
        if self._retriever is None:
            return np.zeros(0, dtype=np.float32)
        known = [t for t in analyze(query, self.analyzer) if t in self._retriever.vocab_dict]
        if not known:
            return np.zeros(len(self.ids), dtype=np.float32)
        return np.asarray(self._retriever.get_scores(known), dtype=np.float32)
