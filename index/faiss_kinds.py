"""The FAISS index behind a store: exact (``flat``) or approximate (``hnsw``), which kind
``index_type: auto`` picks for a size, and rebuilding one without removed vectors.

Every index is an ``IndexIDMap2``, so vectors keep the docstore's chunk ids.
"""

from __future__ import annotations

import numpy as np

from index.errors import IndexMismatchError

AUTO_HNSW_CHUNKS = 100_000
"""``index_type: auto`` switches from exact search to HNSW at this many chunks (and back below
half of it); see the figures in benchmarks/bench_index_latency.py."""


def hnsw_degree(index) -> int | None:
    """The graph degree (``hnsw_m``) of an HNSW index; ``None`` for an exact one."""
    import faiss

    inner = faiss.downcast_index(index.index)
    return inner.hnsw.nb_neighbors(1) if isinstance(inner, faiss.IndexHNSW) else None


def concrete(index_type: str, chunks: int, current: str | None = None) -> str:
    """``flat`` or ``hnsw`` for an index of ``chunks`` whose kind is now ``current``."""
    if index_type != "auto":
        return index_type
    if current == "hnsw":  # hysteresis: no flip-flopping around the threshold
        return "hnsw" if chunks >= AUTO_HNSW_CHUNKS // 2 else "flat"
    return "hnsw" if chunks >= AUTO_HNSW_CHUNKS else "flat"


def new_index(kind: str, dimension: int, hnsw_m: int):
    import faiss

    if kind == "hnsw":
        inner = faiss.IndexHNSWFlat(dimension, hnsw_m, faiss.METRIC_INNER_PRODUCT)
    elif kind == "flat":
        inner = faiss.IndexFlatIP(dimension)
    else:
        raise IndexMismatchError(f"unknown index type {kind!r}; use flat, hnsw or auto")
    return faiss.IndexIDMap2(inner)


def rebuilt(index, removed: np.ndarray, kind: str, hnsw_m: int):
    """A fresh index of ``kind`` holding ``index``'s vectors except ``removed``."""
    import faiss

    ids = faiss.vector_to_array(index.id_map)
    vectors = index.index.reconstruct_n(0, index.ntotal)
    keep = ~np.isin(ids, removed)
    fresh = new_index(kind, index.d, hnsw_m)
    if keep.any():
        fresh.add_with_ids(vectors[keep], ids[keep])
    return fresh
