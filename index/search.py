"""Retrieval over a :class:`Store`: dense, BM25, or hybrid by reciprocal rank fusion.

``min_score`` is a dense cosine threshold (in ``dense`` and ``hybrid`` mode every hit carries its
cosine, so a BM25-only match that means nothing to the embedder can be dropped); ``mmr``
re-ranks the candidates for diversity; ``source_glob`` keeps hits from matching files only.

    chatbot index search "how do I renew my passport" --k 5 --mode hybrid
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from index.embed import Embedder
from index.store import Store
from index.types import Hit

Mode = Literal["dense", "bm25", "hybrid"]
MODES = ("dense", "bm25", "hybrid")
RRF_K = 60  # the constant of Cormack et al. (2009); rank 1 scores 1/61


class Retriever:
    def __init__(self, store: Store, embedder: Embedder | None, mode: Mode = "hybrid", k: int = 4,
                 min_score: float | None = None, mmr: bool = False, mmr_lambda: float = 0.7,
                 ef_search: int = 128):
        if mode not in MODES:
            raise ValueError(f"unknown search mode {mode!r}; use one of {', '.join(MODES)}")
        self.store, self.embedder = store, embedder
        self.mode, self.k, self.min_score = mode, k, min_score
        self.mmr, self.mmr_lambda, self.ef_search = mmr, mmr_lambda, ef_search

    def search(self, query: str, k: int | None = None, mode: Mode | None = None,
               source_glob: str | None = None) -> list[Hit]:
        """The best ``k`` chunks for ``query``, best first."""
        k, mode = k or self.k, mode or self.mode
        if mode not in MODES:
            raise ValueError(f"unknown search mode {mode!r}; use one of {', '.join(MODES)}")
        self.store.refresh()
        allowed = self.store.docstore.ids_matching(source_glob) if source_glob else None
        depth = k if mode == "dense" and not self.mmr else max(50, 4 * k)
        needs_vector = mode != "bm25" or self.mmr
        query_vector = self.embedder.encode([query])[0] if needs_vector else None
        ranked: dict[str, dict[int, float]] = {}
        if mode in ("dense", "hybrid"):
            ranked["dense"] = self._dense(query_vector, depth, allowed)
        if mode in ("bm25", "hybrid"):
            ranked["bm25"] = self._bm25(query, depth, allowed)
        fused = ranked[mode] if mode != "hybrid" else _rrf(ranked.values())
        scores = {name: found for name, found in ranked.items()}
        if mode != "bm25":
            scores["dense"] = self._cosines(query_vector, list(fused), ranked.get("dense", {}))
        order = [i for i in sorted(fused, key=fused.get, reverse=True) if self._passes(i, scores)]
        if self.mmr and query_vector is not None:
            order = self._diversify(query_vector, order, k)
        return self._hits(order[:k], fused, scores)

    def _dense(self, vector: np.ndarray, depth: int, allowed) -> dict[int, float]:
        values, ids = self.store.search(vector[None, :], depth, allowed, self.ef_search)
        return {int(i): float(s) for s, i in zip(values[0], ids[0]) if i >= 0}

    def _bm25(self, query: str, depth: int, allowed) -> dict[int, float]:
        index = self.store.bm25
        if index is None or not len(index.ids):
            return {}
        scores = index.scores(query)
        if allowed is not None:
            scores = np.where(np.isin(index.ids, allowed), scores, 0.0)
        top = np.argsort(-scores, kind="stable")[:depth]
        return {int(index.ids[i]): float(scores[i]) for i in top if scores[i] > 0}

    def _cosines(self, vector: np.ndarray, ids: list[int], known: dict[int, float]
                 ) -> dict[int, float]:
        missing = [i for i in ids if i not in known]
        found = dict(known)
        if missing:
            found.update(zip(missing, (self.store.vectors(missing) @ vector).tolist()))
        return found

    def _passes(self, chunk_id: int, scores: dict[str, dict[int, float]]) -> bool:
        if self.min_score is None or "dense" not in scores:
            return True
        return scores["dense"].get(chunk_id, -1.0) >= self.min_score

    def _diversify(self, vector: np.ndarray, order: list[int], k: int) -> list[int]:
        """Maximal marginal relevance: relevant to the query, unlike the hits already chosen.

        ``mmr_lambda`` 0.7 leans to relevance: at 0.5 a chunk unrelated to the query could beat a
        relevant one that merely shares words with a hit already chosen.
        """
        if len(order) <= 1:
            return order
        vectors = self.store.vectors(order)
        relevance = vectors @ vector
        chosen: list[int] = []
        left = list(range(len(order)))
        while left and len(chosen) < k:
            redundancy = (vectors[left] @ vectors[chosen].T).max(axis=1) if chosen else 0.0
            value = self.mmr_lambda * relevance[left] - (1 - self.mmr_lambda) * redundancy
            chosen.append(left.pop(int(np.argmax(value))))
        return [order[i] for i in chosen]

    def _hits(self, ids: list[int], fused: dict[int, float], scores: dict) -> list[Hit]:
        chunks = self.store.chunks(ids)
        return [Hit(chunk=chunks[i], score=fused[i], rank=rank,
                    scores={name: found[i] for name, found in scores.items() if i in found})
                for rank, i in enumerate(ids, start=1) if i in chunks]


def _rrf(rankings) -> dict[int, float]:
    """Reciprocal rank fusion: each list adds 1 / (60 + rank) to the ids it ranks."""
    fused: dict[int, float] = {}
    for ranking in rankings:
        for rank, chunk_id in enumerate(sorted(ranking, key=ranking.get, reverse=True), start=1):
            fused[chunk_id] = fused.get(chunk_id, 0.0) + 1.0 / (RRF_K + rank)
    return fused
