"""Sentence vectors: each chunk's sentences embedded on their own, so that hybrid search also
ranks a chunk by its best sentence; kept, reused and removed along with their chunks."""

from __future__ import annotations

import json

import numpy as np
import pytest
from index_helpers import CountingEmbedder

from index.errors import IndexMismatchError
from index.fusion import Fusion
from index.manifest import MANIFEST, IndexSettings
from index.search import Retriever
from index.sentence_vectors import sentences_of
from index.store import Store
from index.sync import sync

# The long page holds the query's sentence among many others; the short one shares more of the
# query's words than the long page's average but has no sentence that says it.
LONG = ("# Travel\n\nPack light for short trips. Book trains early for lower fares. Hotels near "
        "the station cost more. Museums close on Mondays in many cities. Passport renewal "
        "takes three weeks by post. Local buses take cash and cards. Keep receipts for "
        "expenses.")
SHORT = "# Fees\n\nPassport fees and renewal weeks differ by post office and country."
QUERY = "passport renewal takes three weeks by post"


def embedder() -> CountingEmbedder:
    return CountingEmbedder(1024, max_tokens=512)


def build(tmp_path, sentence_vectors: bool = True) -> Store:
    docs = tmp_path / "docs"
    docs.mkdir(exist_ok=True)
    (docs / "travel.md").write_text(LONG)
    (docs / "fees.md").write_text(SHORT)
    settings = IndexSettings("hash:1024", None, 400, 8, sentence_vectors=sentence_vectors)
    sync([docs], Store.open(tmp_path / "ix", settings, create=True), embedder())
    return Store.open(tmp_path / "ix", settings)


def first(store: Store, fusion: Fusion):
    hit = Retriever(store, embedder(), mode="hybrid", k=2, fusion=fusion).search(QUERY)[0]
    return hit.source.rsplit("/", 1)[1], hit


def test_a_chunk_is_also_ranked_by_its_best_sentence(tmp_path):
    store = build(tmp_path)
    assert first(store, Fusion("rrf", 1.0, 0.0, 0.0))[0] == "fees.md"  # the chunks' own vectors
    name, hit = first(store, Fusion("rrf", 0.0, 0.0, 1.0))
    assert name == "travel.md" and hit.scores["sentence"] > 0.9 > hit.scores["dense"]


def test_short_pieces_are_left_to_the_chunk_vector():
    assert sentences_of("You can pay by:\n\n- CHAPS\n- Bacs Direct Credit\n- card online") == [
        "You can pay by:", "Bacs Direct Credit"]


def test_an_index_without_sentence_vectors_ranks_by_chunks_and_bm25(tmp_path):
    store = build(tmp_path, sentence_vectors=False)
    hit = Retriever(store, embedder(), mode="hybrid", k=2).search(QUERY)[0]
    assert set(hit.scores) == {"dense", "bm25"}


def test_unchanged_chunks_keep_their_sentence_vectors(tmp_path):
    store = build(tmp_path)
    ids = list(store.chunks(range(1, 100)))
    before = store.sentence_vectors(ids)
    (tmp_path / "docs" / "fees.md").write_text("# Fees\n\nFees changed in April this year.")
    counting = embedder()
    report = sync([tmp_path / "docs"], Store.open(tmp_path / "ix"), counting)
    assert not any("Passport renewal" in text for text in counting.texts)
    after = Store.open(tmp_path / "ix")
    fees = [i for i, c in after.chunks(range(1, 100)).items() if c.source.endswith("fees.md")]
    assert report.sentences == sum(map(len, after.sentence_vectors(fees).values())) > 0
    assert (report.embedded, report.sentences) == (1, 1)  # the one chunk whose text changed
    assert "1 chunk written (1 embedded, with 1 of its sentences)" in report.summary()
    travel = {c.text: i for i, c in after.chunks(range(1, 100)).items() if "Travel" in c.location}
    old = {c.text: i for i, c in store.chunks(ids).items() if "Travel" in c.location}
    for text, chunk_id in travel.items():
        np.testing.assert_array_equal(after.sentence_vectors([chunk_id])[chunk_id],
                                      before[old[text]])
    orphans = after.docstore.db.execute(
        "SELECT count(*) FROM sentence_vectors WHERE id NOT IN (SELECT id FROM chunks)")
    assert orphans.fetchone()[0] == 0


def test_an_index_built_before_sentence_vectors_asks_for_a_rebuild(tmp_path):
    build(tmp_path, sentence_vectors=False)
    manifest = tmp_path / "ix" / MANIFEST
    data = json.loads(manifest.read_text())
    del data["sentence_vectors"]  # as written before the setting existed
    manifest.write_text(json.dumps(data))
    wanted = IndexSettings("hash:1024", None, 400, 8)
    with pytest.raises(IndexMismatchError) as error:
        Store.open(tmp_path / "ix", wanted)
    assert "sentences were not embedded" in str(error.value)
    assert "chatbot index sync --rebuild" in str(error.value)
    sync([tmp_path / "docs"], Store.open(tmp_path / "ix"), embedder(), rebuild=wanted)
    rebuilt = Store.open(tmp_path / "ix", wanted)
    assert first(rebuilt, Fusion("rrf", 0.0, 0.0, 1.0))[0] == "travel.md"
