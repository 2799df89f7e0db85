"""Retrieval over a :class:`Store`: dense, BM25, or hybrid (the two fused, ``index/fusion.py``,
with each chunk's best sentence as a third ranking where the index keeps sentence vectors).

``min_score`` is a dense cosine threshold (in ``dense`` and ``hybrid`` mode every hit carries its
cosine, so a BM25-only match that means nothing to the embedder can be dropped); ``mmr``
re-ranks the candidates for diversity; ``merge_neighbours`` joins consecutive chunks of one
document into one passage of at most ``merge_max_words`` (``index/passages.py``);
``source_glob`` keeps hits from matching files only.

    chatbot index search "how do I renew my passport" --k 5 --mode hybrid
"""

from __future__ import annotations

import threading
from typing import Literal

import numpy as np

from index.embed import Embedder
from index.fusion import Fusion, fuse
from index.passages import MAX_WORDS, group_neighbours, merged_chunk
from index.sentence_vectors import best_sentence_scores
from index.store import Store
from index.types import Chunk, Hit

Mode = Literal["dense", "bm25", "hybrid"]
MODES = ("dense", "bm25", "hybrid")


class Retriever:
    def __init__(self, store: Store, embedder: Embedder | None, mode: Mode = "hybrid", k: int = 4,
                 min_score: float | None = None, mmr: bool = False, mmr_lambda: float = 0.7,
                 ef_search: int = 128, fusion: Fusion = Fusion(),
                 merge_neighbours: bool = False, merge_max_words: int = MAX_WORDS):
        if mode not in MODES:
            raise ValueError(f"unknown search mode {mode!r}; use one of {', '.join(MODES)}")
        self.store, self.embedder = store, embedder
        """The generation searches read; ``_in_force`` moves it on after a sync."""
        self._following = threading.Lock()
        self.mode, self.k, self.min_score = mode, k, min_score
        self.mmr, self.mmr_lambda, self.ef_search = mmr, mmr_lambda, ef_search
        self.fusion, self.merge_neighbours = fusion, merge_neighbours
        self.merge_max_words = merge_max_words

    def search(self, query: str, k: int | None = None, mode: Mode | None = None,
               source_glob: str | None = None) -> list[Hit]:
        """The best ``k`` passages for ``query``, best first."""
        k, mode = k or self.k, mode or self.mode
        if mode not in MODES:
            raise ValueError(f"unknown search mode {mode!r}; use one of {', '.join(MODES)}")
        store = self._in_force()  # this search reads one generation from start to end
        allowed = store.docstore.ids_matching(source_glob) if source_glob else None
        depth = max(50, 4 * k)  # room for what min_score, MMR, merging and copies leave out
        needs_vector = mode != "bm25" or self.mmr
        query_vector = self.embedder.encode([query])[0] if needs_vector else None
        fused, scores = self._score(store, query, query_vector, mode, depth, allowed)
        order = [i for i in sorted(fused, key=lambda i: (-fused[i], i))  # ties: indexed first
                 if self._passes(i, scores)]
        if self.mmr and query_vector is not None:
            order = self._diversify(store, query_vector, order, k)
        chunks, groups = self._passages(store, order, k)
        return [Hit(chunk=merged_chunk([chunks[i] for i in group]), score=fused[group[0]],
                    rank=rank, scores={name: found[group[0]] for name, found in scores.items()
                                       if group[0] in found})
                for rank, group in enumerate(groups, start=1)]

    def _in_force(self) -> Store:
        """The store of the generation in force, moved on (under a lock: searches run on
        several threads of a server) when a sync has committed since."""
        with self._following:
            if self.store.moved_on():
                self.store = self.store.next_generation()
            return self.store

    def _passages(self, store: Store, order: list[int], k: int
                  ) -> tuple[dict[int, Chunk], list[list[int]]]:
        """The chunks read and the ``k`` passages: groups of neighbours (``index/passages.py``)
        with ``merge_neighbours``, else one chunk each. A chunk whose text a better one has
        already (one file under two names) is left out: it would take a place and add nothing.

        Chunks are read from the docstore a window at a time (``4 * k`` when merging, else
        ``k``), as the passages need them (they rarely need more than the first window):
        reading every candidate cost more than fusing them
        (benchmarks/bench_retrieval_latency.py). A merging window is enough once one of its
        chunks was left out of every group, which only happens where the walk ended.
        """
        size = 4 * k if self.merge_neighbours else k
        while True:
            window = order[:size]
            chunks = store.chunks(window)
            distinct = _first_of_each_text(window, chunks)
            if self.merge_neighbours:
                groups = group_neighbours(distinct, chunks, k, self.merge_max_words)
                grouped = {i for group in groups for i in group}
                enough = any(i not in grouped for i in distinct)
            else:
                groups = [[i] for i in distinct[:k]]
                enough = len(groups) == k
            if enough or size >= len(order):
                return chunks, groups
            size *= 2

    def _score(self, store: Store, query: str, query_vector: np.ndarray | None, mode: Mode,
               depth: int, allowed) -> tuple[dict[int, float], dict[str, dict[int, float]]]:
        """(chunk id -> score in ``mode``, each retriever's own scores of those chunks)."""
        ranked: dict[str, dict[int, float]] = {}
        if mode in ("dense", "hybrid"):
            ranked["dense"] = self._dense(store, query_vector, depth, allowed)
        if mode in ("bm25", "hybrid"):
            bm25_ids, bm25_scores = self._bm25(store, query, allowed)
            ranked["bm25"] = _top(bm25_ids, bm25_scores, depth)
        candidates = list(dict.fromkeys(i for found in ranked.values() for i in found))
        scores = dict(ranked)
        if mode != "bm25":
            scores["dense"] = self._cosines(store, query_vector, candidates,
                                            ranked.get("dense", {}))
        if mode != "hybrid":
            return ranked[mode], scores
        if self.fusion.sentence_weight and store.settings.sentence_vectors:
            ranked["sentence"] = scores["sentence"] = best_sentence_scores(
                store.sentence_vectors(candidates), query_vector, scores["dense"])
        if self.fusion.method == "rrf":
            return fuse(ranked, self.fusion), scores
        scores["bm25"] = _lookup(bm25_ids, bm25_scores, candidates)
        return fuse(scores, self.fusion), scores

    def _dense(self, store: Store, vector: np.ndarray, depth: int, allowed) -> dict[int, float]:
        values, ids = store.search(vector[None, :], depth, allowed, self.ef_search)
        return {int(i): float(s) for s, i in zip(values[0], ids[0]) if i >= 0}

    def _bm25(self, store: Store, query: str, allowed) -> tuple[np.ndarray, np.ndarray]:
        """(chunk ids in ascending order, the BM25 score of each); 0 outside ``allowed``."""
        index = store.bm25
        if index is None or not len(index.ids):
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        scores = index.scores(query)
        if allowed is not None:
            scores = np.where(np.isin(index.ids, allowed), scores, 0.0)
        return index.ids, scores

    def _cosines(self, store: Store, vector: np.ndarray, ids: list[int],
                 known: dict[int, float]) -> dict[int, float]:
        missing = [i for i in ids if i not in known]
        found = dict(known)
        if missing:
            found.update(zip(missing, (store.vectors(missing) @ vector).tolist()))
        return found

    def _passes(self, chunk_id: int, scores: dict[str, dict[int, float]]) -> bool:
        if self.min_score is None or "dense" not in scores:
            return True
        return scores["dense"].get(chunk_id, -1.0) >= self.min_score

    def _diversify(self, store: Store, vector: np.ndarray, order: list[int], k: int
                   ) -> list[int]:
        """Maximal marginal relevance: relevant to the query, unlike the hits already chosen.
        The ``k`` chosen come first, then the rest as ``order`` ranks them: they take the places
        that merging neighbours or leaving out a copy frees.

        ``mmr_lambda`` 0.7 leans to relevance: at 0.5 a chunk unrelated to the query could beat a
        relevant one that merely shares words with a hit already chosen.
        """
        if len(order) <= 1:
            return order
        vectors = store.vectors(order)
        relevance = vectors @ vector
        chosen: list[int] = []
        left = list(range(len(order)))
        while left and len(chosen) < k:
            redundancy = (vectors[left] @ vectors[chosen].T).max(axis=1) if chosen else 0.0
            value = self.mmr_lambda * relevance[left] - (1 - self.mmr_lambda) * redundancy
            chosen.append(left.pop(int(np.argmax(value))))
        return [order[i] for i in chosen + left]


def _first_of_each_text(order: list[int], chunks: dict[int, Chunk]) -> list[int]:
    """The ids of ``order`` that were read, less any whose text (spacing aside) an earlier
    one has."""
    first: dict[str, int] = {}
    for chunk_id in order:
        if chunk_id in chunks:
            first.setdefault(" ".join(chunks[chunk_id].text.split()), chunk_id)
    return list(first.values())


def _top(ids: np.ndarray, scores: np.ndarray, depth: int) -> dict[int, float]:
    """The ``depth`` best-scoring chunks that match at all, best first (ties: lower id first).

    Partitioned before sorting: a full sort of every chunk's score took ~10 ms a query at 100k
    chunks (benchmarks/bench_retrieval_latency.py), the partition a fraction of that.
    """
    matched = np.flatnonzero(scores > 0)
    if len(matched) > depth:
        matched = matched[np.argpartition(-scores[matched], depth - 1)[:depth]]
    top = matched[np.lexsort((matched, -scores[matched]))]
    return {int(ids[i]): float(scores[i]) for i in top}


def _lookup(ids: np.ndarray, scores: np.ndarray, wanted: list[int]) -> dict[int, float]:
    """The scores of ``wanted`` chunk ids (0 for one ``ids`` lacks); ``ids`` is ascending."""
    if not len(ids):
        return {i: 0.0 for i in wanted}
    positions = np.minimum(np.searchsorted(ids, wanted), len(ids) - 1)
    return {i: float(scores[p]) if ids[p] == i else 0.0 for i, p in zip(wanted, positions)}
