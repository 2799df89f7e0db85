"""Each chunk's sentences embedded on their own, so that a chunk is also ranked by its best
sentence.

A chunk's vector stands for everything the chunk says; a question about one rule in a long
section meets that rule's sentence more closely than the section as a whole (Dai and Callan's
"max passage" scoring of documents, one level down). Hybrid search adds this ranking to the
chunk's own vector and BM25 (``index/fusion.py``); on the dev slice it moved the first passage
with evidence up for 9 questions and down for 1 (README, "Retrieval quality"). The sentences are
those attribution reads (``index/sentences.py``). The vectors live in the docstore as float16,
about 4 rows a chunk, and cost a little more embedding than the chunks themselves at indexing
(``index.sentence_vectors: false`` turns them off).
"""

from __future__ import annotations

import numpy as np

from index.embed import Embedder
from index.sentences import sentence_spans

MIN_WORDS = 3
"""Shorter pieces (a list item such as "CHAPS", a bare heading) say too little on their own; the
chunk's vector still covers them."""


def sentences_of(text: str) -> list[str]:
    """The sentences of a chunk's text that are embedded on their own."""
    pieces = (text[start:end] for start, end in sentence_spans(text))
    return [piece for piece in pieces if len(piece.split()) >= MIN_WORDS]


def encode_sentences(embedder: Embedder, texts: list[str]) -> list[np.ndarray]:
    """One ``(sentences, dimension)`` float16 array per text (0 rows for a text without a
    sentence of ``MIN_WORDS``), from a single ``encode`` call."""
    split = [sentences_of(text) for text in texts]
    flat = [sentence for sentences in split for sentence in sentences]
    vectors = embedder.encode(flat).astype(np.float16) if flat else np.zeros((0, 0), np.float16)
    bounds = np.cumsum([0, *map(len, split)])
    return [vectors[start:end] for start, end in zip(bounds, bounds[1:])]


def best_sentence_scores(found: dict[int, np.ndarray], query_vector: np.ndarray,
                         chunk_scores: dict[int, float]) -> dict[int, float]:
    """Chunk id -> cosine of its sentence nearest the query; a chunk without sentence vectors
    in ``found`` keeps its own cosine from ``chunk_scores``.

    One product over all the candidates' sentences, not one per chunk: ~100 small products
    cost more than the fetch of the vectors (benchmarks/bench_retrieval_latency.py).
    """
    best = dict(chunk_scores)
    ids = [chunk_id for chunk_id in chunk_scores if chunk_id in found]
    if ids:
        rows = [found[chunk_id] for chunk_id in ids]
        cosines = np.concatenate(rows).astype(np.float32) @ query_vector.astype(np.float32)
        starts = np.cumsum([0, *map(len, rows[:-1])])
        best.update(zip(ids, np.maximum.reduceat(cosines, starts).tolist()))
    return best
