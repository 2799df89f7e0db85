"""Cross-encoder reranking: search wide, then re-read each candidate with the query.

A bi-encoder embeds query and passage apart; a cross-encoder reads them together, so it ranks
better but costs one model pass per candidate. :class:`RerankingRetriever` asks the retriever
for ``candidates`` hits and keeps the ``k`` the cross-encoder scores highest.

    retrieval: {rerank: {model: cross-encoder/ms-marco-MiniLM-L-6-v2, candidates: 30}}
    python benchmarks/bench_rerank.py      # ms per question on this machine
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

from index.errors import IndexingError
from index.search import Mode, Retriever
from index.store import Store
from index.types import Hit


class Scorer(Protocol):
    def scores(self, query: str, texts: list[str]) -> list[float]:
        """One relevance score per text (higher is more relevant)."""
        ...


class CrossEncoderScorer:
    """A sentence-transformers ``CrossEncoder``, loaded on first use from ``path`` (a local
    directory, or a hub id already in the local cache: nothing is downloaded here)."""

    def __init__(self, path: str, device: str | None = None, batch_size: int = 32) -> None:
        self.path = path
        self.device = None if device in (None, "auto") else device
        self.batch_size = batch_size
        self._model = None

    @property
    def model(self):
        if self._model is None:
            from sentence_transformers import CrossEncoder

            try:
                _check_scores_pairs(self.path)
                self._model = CrossEncoder(self.path, device=self.device, local_files_only=True)
            except (OSError, ValueError) as exc:  # ValueError: a folder that holds no model
                raise IndexingError(
                    f"cross-encoder {self.path!r} could not be loaded ({exc}); give a local "
                    "model directory or a hub id already in the Hugging Face cache (nothing is "
                    "downloaded while answering)") from exc
        return self._model

    def scores(self, query: str, texts: list[str]) -> list[float]:
        if not texts:
            return []
        values = self.model.predict([(query, text) for text in texts],
                                    batch_size=self.batch_size, show_progress_bar=False,
                                    convert_to_numpy=True)
        return [float(v) for v in values.reshape(len(texts))]


def _check_scores_pairs(path: str) -> None:
    """Refuse a model that is no reranker: an embedder or a chat model would load with a new,
    random scoring head (only a warning says so) and shuffle the passages; a classifier with
    several labels gives several scores a pair."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(path, local_files_only=True)
    kinds = ", ".join(config.architectures or []) or "model of no named architecture"
    if not kinds.endswith("ForSequenceClassification"):
        raise IndexingError(
            f"{path!r} is not a cross-encoder: it is a {kinds}, not a model trained to score a "
            "question and a passage together (…ForSequenceClassification); give a reranker "
            "such as cross-encoder/ms-marco-MiniLM-L-6-v2, or remove retrieval.rerank.model")
    if config.num_labels != 1:
        raise IndexingError(f"cross-encoder {path!r} gives {config.num_labels} scores a pair; a "
                            "reranker gives one (num_labels 1)")


def rerank(query: str, hits: list[Hit], scorer: Scorer, k: int) -> list[Hit]:
    """The ``k`` hits the scorer rates highest, best first, renumbered from 1; each keeps its
    search score as ``scores["search"]`` and takes the cross-encoder's as ``score``."""
    values = scorer.scores(query, [hit.text for hit in hits])
    order = sorted(range(len(hits)), key=lambda i: values[i], reverse=True)[:k]
    return [dataclasses.replace(hits[i], score=values[i], rank=rank,
                                scores={**hits[i].scores, "search": hits[i].score,
                                        "rerank": values[i]})
            for rank, i in enumerate(order, start=1)]


class RerankingRetriever:
    """A :class:`Retriever` whose hits are re-ordered by a cross-encoder; same ``search``."""

    def __init__(self, retriever: Retriever, scorer: Scorer, candidates: int = 30) -> None:
        self.retriever, self.scorer, self.candidates = retriever, scorer, candidates

    @property
    def store(self) -> Store:
        return self.retriever.store

    def search(self, query: str, k: int | None = None, mode: Mode | None = None,
               source_glob: str | None = None) -> list[Hit]:
        """The best ``k`` of the retriever's ``candidates`` (at least ``k``) hits, best first."""
        k = k or self.retriever.k
        found = self.retriever.search(query, k=max(k, self.candidates), mode=mode,
                                      source_glob=source_glob)
        return rerank(query, found, self.scorer, k)
