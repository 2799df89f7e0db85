"""Neighbour merging: consecutive chunks of one document found together take one slot."""

from __future__ import annotations

import pytest
from index_helpers import CountingEmbedder

from index.manifest import IndexSettings
from index.passages import group_neighbours, merged_chunk
from index.search import Retriever
from index.store import Store
from index.sync import sync
from index.types import Chunk


def chunk(index: int, text: str, source: str = "a.md", location: str = "Guide") -> Chunk:
    return Chunk(f"{source}-{index}", source, text, location, "", {"index": index})


def test_neighbours_join_their_group_and_free_a_slot():
    chunks = {1: chunk(0, "a"), 2: chunk(1, "b"), 3: chunk(5, "c"), 4: chunk(0, "d", "b.md"),
              5: chunk(2, "e")}
    assert group_neighbours([2, 4, 1, 3, 5], chunks, k=2) == [[2, 1], [4]]
    assert group_neighbours([2, 4, 1, 5, 3], chunks, k=3) == [[2, 1, 5], [4], [3]]


def test_a_passage_grows_only_up_to_the_word_cap():
    chunks = {i: chunk(i, f"word{i} " * 40) for i in range(4)}
    assert group_neighbours([0, 1, 2, 3], chunks, k=2, max_words=80) == [[0, 1], [2, 3]]
    assert group_neighbours([0, 1, 2, 3], chunks, k=1, max_words=120) == [[0, 1, 2]]


def test_a_neighbour_over_the_cap_takes_a_slot_of_its_own_and_a_long_chunk_stays_whole():
    chunks = {1: chunk(0, "short text"), 2: chunk(1, "long " * 200), 3: chunk(7, "elsewhere")}
    assert group_neighbours([1, 2, 3], chunks, k=3, max_words=100) == [[1], [2], [3]]
    assert group_neighbours([2, 1], chunks, k=1, max_words=100) == [[2]]


def test_rows_of_one_file_are_separate_documents():
    first = Chunk("r1", "faq.csv", "x", "row 1", "", {"index": 0, "row": 1})
    second = Chunk("r2", "faq.csv", "y", "row 2", "", {"index": 1, "row": 2})
    assert group_neighbours([1, 2], {1: first, 2: second}, k=2) == [[1], [2]]


def test_merged_text_gives_the_overlap_once_and_names_a_new_section():
    parts = [chunk(1, "carried on with the shared overlap text here",),
             chunk(0, "It starts. Then it carried on"),
             chunk(2, "Apply online.", location="Guide > How to apply")]
    merged = merged_chunk(parts)
    assert merged.text == ("It starts. Then it carried on\ncarried on with the shared overlap "
                           "text here\n\nHow to apply\nApply online.")
    assert merged.location == "Guide" and merged.chunk_id == "a.md-0+a.md-1+a.md-2"
    assert merged.metadata["locations"] == ["Guide", "Guide > How to apply"]
    overlapping = merged_chunk([chunk(0, "One two three four five six"),
                                chunk(1, "three four five six seven eight")])
    assert overlapping.text == "One two three four five six seven eight"


def test_retriever_merges_consecutive_hits_into_one_passage(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    words = " ".join(f"tower{i}" for i in range(30))  # under 10 characters a token
    (docs / "long.md").write_text(f"# Keeper\n\n{words} beacon lamp.\n\n{words} beacon oil.\n")
    (docs / "other.md").write_text("# Other\n\nThe beacon is lit at dusk.")
    store = Store.open(tmp_path / "ix", IndexSettings("hash:256", None, 40, 0), create=True)
    sync([docs], store, CountingEmbedder(256))
    store = Store.open(tmp_path / "ix")
    plain = Retriever(store, CountingEmbedder(256), mode="bm25", k=2).search("beacon lamp oil")
    assert [h.source.endswith("long.md") for h in plain] == [True, True]
    merged = Retriever(store, CountingEmbedder(256), mode="bm25", k=2,
                       merge_neighbours=True).search("beacon lamp oil")
    assert [h.rank for h in merged] == [1, 2] and merged[1].source.endswith("other.md")
    assert "beacon lamp" in merged[0].text and "beacon oil" in merged[0].text
    assert merged[0].score == pytest.approx(plain[0].score)
    capped = Retriever(store, CountingEmbedder(256), mode="bm25", k=2, merge_neighbours=True,
                       merge_max_words=20).search("beacon lamp oil")
    assert [h.text for h in capped] == [h.text for h in plain]


def test_a_passage_can_gather_more_neighbours_than_the_first_window_of_chunks(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    paragraphs = [f"Beacon part {i}: " + " ".join(f"lamp{i}x{j}" for j in range(25))
                  for i in range(9)]
    (docs / "long.md").write_text("# Keeper\n\n" + "\n\n".join(paragraphs) + "\n")
    store = Store.open(tmp_path / "ix", IndexSettings("hash:256", None, 40, 0), create=True)
    sync([docs], store, CountingEmbedder(256))
    store = Store.open(tmp_path / "ix")
    assert store.manifest.counts.chunks == 9
    passages = Retriever(store, CountingEmbedder(256), mode="bm25", k=1, merge_neighbours=True,
                         merge_max_words=10_000).search("beacon part")
    assert len(passages) == 1 and all(f"Beacon part {i}:" in passages[0].text for i in range(9))
