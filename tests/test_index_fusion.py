"""Fusing the dense, BM25 and best-sentence rankings: weighted reciprocal ranks, normalised scores,
weights."""

from __future__ import annotations

import pytest
from test_index_search import Embedder, names, store  # noqa: F401 (a fixture)

from index.fusion import RRF_K, Fusion, fuse
from index.search import Retriever

DENSE = {1: 0.9, 2: 0.5}
BM25 = {2: 3.0, 3: 1.0}


def test_weighted_rrf_adds_weight_over_rank():
    fused = fuse({"dense": DENSE, "bm25": BM25}, Fusion("rrf", 2.0, 1.0))
    assert fused == pytest.approx({1: 2 / (RRF_K + 1), 2: 2 / (RRF_K + 2) + 1 / (RRF_K + 1),
                                   3: 1 / (RRF_K + 2)})


def test_score_fusion_adds_weighted_min_max_scores():
    fused = fuse({"dense": {1: 0.9, 2: 0.5, 3: 0.1}, "bm25": {1: 0.0, 2: 3.0, 3: 1.0}},
                 Fusion("score", 0.7, 0.3))
    assert fused == pytest.approx({1: 0.7, 2: 0.7 * 0.5 + 0.3, 3: 0.3 / 3})


@pytest.mark.parametrize(("fusion", "message"), [
    (dict(method="max"), "unknown fusion method 'max'; use one of rrf, score"),
    (dict(dense_weight=0.0, bm25_weight=0.0, sentence_weight=0.0),
     "fusion weights must be >= 0 and not all 0, got dense 0.0, bm25 0.0, sentence 0.0"),
    (dict(bm25_weight=-1.0),
     "fusion weights must be >= 0 and not all 0, got dense 2.0, bm25 -1.0, sentence 1.0"),
])
def test_bad_fusions_are_refused(fusion, message):
    with pytest.raises(ValueError) as error:
        Fusion(**fusion)
    assert str(error.value) == message


@pytest.mark.parametrize("method", ["rrf", "score"])
def test_a_zero_weight_leaves_the_other_ranking(store, method):  # noqa: F811
    query = "pump oil lawn roses"
    dense = Retriever(store, Embedder(), mode="dense", k=3).search(query)
    only_dense = Retriever(store, Embedder(), mode="hybrid", k=3,
                           fusion=Fusion(method, 1.0, 0.0, 0.0)).search(query)
    assert [h.chunk.chunk_id for h in only_dense] == [h.chunk.chunk_id for h in dense]
    bm25 = Retriever(store, Embedder(), mode="bm25", k=3).search(query)
    only_bm25 = Retriever(store, Embedder(), mode="hybrid", k=3,
                          fusion=Fusion(method, 0.0, 1.0, 0.0)).search(query)
    assert names(only_bm25)[:len(bm25)] == names(bm25)


def test_score_fusion_scores_every_candidate_with_each_ranking(store):  # noqa: F811
    hits = Retriever(store, Embedder(), mode="hybrid", k=8,
                     fusion=Fusion("score", 1.0, 1.0, 1.0)).search("pump oil filter")
    assert names(hits)[0] == "pump.md" and hits[0].score == pytest.approx(3.0)
    assert all(set(h.scores) == {"dense", "bm25", "sentence"} for h in hits)


def test_the_config_reaches_the_retriever(tmp_path):
    from app.build import bot_index
    from chatbot.config_file import config_problems, load_config
    from index.context import NONE

    zero = {"dense_weight": 0, "bm25_weight": 0, "sentence_weight": 0}
    assert config_problems({"retrieval": {"fusion": zero}}) == [
        "retrieval.fusion: dense_weight, bm25_weight and sentence_weight cannot all be 0"]
    path = tmp_path / "bot.yaml"
    path.write_text("index:\n  contextual: false\n  sentence_vectors: false\nretrieval:\n"
                    "  merge_neighbours: true\n"
                    "  fusion: {method: score, dense_weight: 0.7, bm25_weight: 0.3}\n")
    index = bot_index(load_config(path))
    assert (index.settings.context, index.settings.sentence_vectors) == (NONE, False)
    assert (index.search.fusion, index.search.merge_neighbours) == (Fusion("score", 0.7, 0.3),
                                                                    True)
