"""Fusing the rankings of one query into one, with a weight for each: the chunks' dense cosines,
BM25, and (where the index keeps sentence vectors) each chunk's best sentence's cosine
(``index/sentence_vectors.py``).

- ``rrf``: weighted reciprocal rank fusion; each ranking adds ``weight / (60 + rank)`` to the
  chunks it ranks. Only ranks count, so it needs no calibration between the scores.
- ``score``: each retriever's scores over the candidates (the union of both rankings, each
  candidate scored by each) are min-max normalised to 0..1 and added with their weights, so a
  chunk far ahead in one ranking keeps its lead instead of being flattened to a rank.

    chatbot index search "how do I renew my passport" --mode hybrid
"""

from __future__ import annotations

from dataclasses import dataclass

RRF_K = 60  # the constant of Cormack et al. (2009); rank 1 scores 1/61
METHODS = ("rrf", "score")


@dataclass(frozen=True)
class Fusion:
    """How ``hybrid`` search fuses its two rankings.

    The default leans to the embedder (2:1): on 47 gov.uk pages never used for tuning, dense
    search alone beat equal-weight fusion, and on the dev slice every dense-leaning weighting
    tried beat 1:1 (README, "Retrieval quality"); 2 is the middle of that plateau, not its peak.
    The best-sentence ranking weighs as much as BM25: every weight tried from 0.5 to 1.5 raised
    MRR on the dev slice by 0.04-0.06, and 1 is the middle.
    """

    method: str = "rrf"
    dense_weight: float = 2.0
    bm25_weight: float = 1.0
    sentence_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown fusion method {self.method!r}; use one of "
                             f"{', '.join(METHODS)}")
        weights = self.weights()
        if min(weights.values()) < 0 or not sum(weights.values()):
            raise ValueError("fusion weights must be >= 0 and not all 0, got "
                             + ", ".join(f"{name} {value}" for name, value in weights.items()))

    def weights(self) -> dict[str, float]:
        return {"dense": self.dense_weight, "bm25": self.bm25_weight,
                "sentence": self.sentence_weight}


def fuse(scores: dict[str, dict[int, float]], fusion: Fusion) -> dict[int, float]:
    """Chunk id -> fused score; ``scores`` maps each retriever's name to its chunk scores.

    For ``rrf`` each retriever's dict is its ranking (only its own top chunks); for ``score``
    every retriever must have scored every candidate (a chunk a retriever does not match scores
    0 there, as BM25 gives a chunk without the query's words).
    """
    weights = fusion.weights()
    fused: dict[int, float] = {}
    for name, found in scores.items():
        add = _reciprocal_ranks(found) if fusion.method == "rrf" else _min_max(found)
        for chunk_id, value in add.items():
            fused[chunk_id] = fused.get(chunk_id, 0.0) + weights[name] * value
    return fused


def _reciprocal_ranks(found: dict[int, float]) -> dict[int, float]:
    order = sorted(found, key=found.get, reverse=True)
    return {chunk_id: 1.0 / (RRF_K + rank) for rank, chunk_id in enumerate(order, start=1)}


def _min_max(found: dict[int, float]) -> dict[int, float]:
    if not found:
        return {}
    low, high = min(found.values()), max(found.values())
    span = high - low
    return {chunk_id: (value - low) / span if span else 1.0 for chunk_id, value in found.items()}
