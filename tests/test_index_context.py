"""Contextual chunks: title and heading path embedded and BM25-indexed, not shown; an index
built before them is refused with the command that fixes it; BM25 stems, and a stemmer change
is applied by the next sync without re-embedding."""

from __future__ import annotations

import json

import pytest
from index_helpers import CountingEmbedder

from index.bm25 import ENGLISH, STOPWORDS, analyze
from index.context import NONE, TITLE_HEADINGS, context_line
from index.errors import IndexMismatchError
from index.manifest import MANIFEST, IndexSettings
from index.search import Retriever
from index.store import Store
from index.sync import sync

PAGE = ("<html><head><title>Carer's Allowance</title></head><body><main>"
        "<h1>Carer's Allowance</h1><h2>Eligibility</h2><p>You must be 16 or over.</p>"
        "</main></body></html>")


def settings(context: str = TITLE_HEADINGS, analyzer: str = ENGLISH) -> IndexSettings:
    return IndexSettings("hash:256", None, 60, 8, context=context, bm25_analyzer=analyzer)


@pytest.fixture()
def docs(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "carers.html").write_text(PAGE)
    (tmp_path / "docs" / "passport.md").write_text("# Passports\n\nRenewing costs 88 pounds.")
    return tmp_path / "docs"


def build(tmp_path, docs, embedder=None, **kw) -> Store:
    sync([docs], Store.open(tmp_path / "ix", settings(**kw), create=True),
         embedder or CountingEmbedder(256))
    return Store.open(tmp_path / "ix")


def test_title_and_headings_are_embedded_and_searched_but_not_shown(tmp_path, docs):
    embedder = CountingEmbedder(256)
    store = build(tmp_path, docs, embedder)
    assert "Carer's Allowance > Eligibility\n\nYou must be 16 or over." in embedder.texts
    hits = Retriever(store, embedder, mode="bm25", k=1).search("carer allowance")
    assert hits[0].text == "You must be 16 or over."
    assert hits[0].location == "Carer's Allowance > Eligibility"


def test_without_context_the_title_is_not_searchable(tmp_path, docs):
    store = build(tmp_path, docs, context=NONE)
    assert Retriever(store, CountingEmbedder(256), mode="bm25").search("carer allowance") == []


def test_a_renamed_heading_re_embeds_its_chunk(tmp_path, docs):
    build(tmp_path, docs)
    (docs / "passport.md").write_text("# Passport fees\n\nRenewing costs 88 pounds.")
    embedder = CountingEmbedder(256)
    build(tmp_path, docs, embedder)
    # The chunk with its new heading path, then its one sentence on its own.
    assert embedder.texts == ["Passport fees\n\nRenewing costs 88 pounds.",
                              "Renewing costs 88 pounds."]


def test_an_index_built_before_contextual_chunks_is_refused(tmp_path, docs):
    build(tmp_path, docs, context=NONE, analyzer=STOPWORDS)
    path = tmp_path / "ix" / MANIFEST
    data = json.loads(path.read_text())
    del data["context"], data["bm25_analyzer"]  # as written before they were recorded
    path.write_text(json.dumps(data))
    with pytest.raises(IndexMismatchError) as error:
        Store.open(tmp_path / "ix", settings())
    assert str(error.value) == (
        f"{path}: built with other settings (its chunks were embedded without their document "
        "title and heading path (context 'none'; built before contextual chunks), the config "
        "wants 'title+headings'); re-index it: chatbot index sync --rebuild")
    old = Store.open(tmp_path / "ix")  # still readable, searched with its own analyzer
    assert (old.settings.context, old.settings.bm25_analyzer) == (NONE, STOPWORDS)
    assert Retriever(old, CountingEmbedder(256), mode="bm25").search("renewing")


def test_context_line_gives_a_repeated_heading_once():
    assert context_line("Carer's Allowance", ["carer's  allowance", "Eligibility"]) == (
        "Carer's Allowance > Eligibility")
    assert context_line("", []) == ""


def test_bm25_stems_and_drops_stop_words():
    assert analyze("The renewals are RUNNING") == ["renew", "run"]
    assert analyze("The renewals are RUNNING", STOPWORDS) == ["renewals", "running"]
    with pytest.raises(ValueError, match="unknown BM25 analyzer 'porter'; use one of stopwords"):
        analyze("x", "porter")


def test_stemming_matches_other_forms_of_a_word(tmp_path, docs):
    query = "passport renewal"
    plain = build(tmp_path / "plain", docs, analyzer=STOPWORDS)
    hits = Retriever(plain, CountingEmbedder(256), mode="bm25").search(query)
    assert [h.text for h in hits] == []  # "passports", "renewing": no exact word in common
    stemmed = build(tmp_path / "stemmed", docs)
    hits = Retriever(stemmed, CountingEmbedder(256), mode="bm25").search(query)
    assert [h.text for h in hits] == ["Renewing costs 88 pounds."]


def test_a_new_analyzer_is_applied_by_the_next_sync_without_re_embedding(tmp_path, docs):
    build(tmp_path, docs, analyzer=STOPWORDS)
    embedder = CountingEmbedder(256)
    store = build(tmp_path, docs, embedder)
    assert embedder.calls == 0 and store.settings.bm25_analyzer == ENGLISH
    assert Retriever(store, embedder, mode="bm25").search("renewal")
