"""The real embedded embedder (all-MiniLM-L6-v2) end to end: sync Markdown, find the right file."""

from __future__ import annotations

import pytest

from chatbot.models import resolve_model
from index.embed import SentenceTransformerEmbedder
from index.manifest import IndexSettings
from index.search import Retriever
from index.store import Store
from index.sync import sync

pytestmark = pytest.mark.integration

DOCS = {
    "passport.md": "# Passports\n\n## Renewing\n\nYou can renew an adult passport online. It "
                   "costs 88 pounds and usually takes three weeks.",
    "driving.md": "# Driving licence\n\n## Changing your address\n\nTell the DVLA when you move "
                  "house; updating the address on a licence is free.",
    "benefits.md": "# Carer's Allowance\n\n## Eligibility\n\nYou may get Carer's Allowance if "
                   "you care for someone at least 35 hours a week.",
    "tax.md": "# Self Assessment\n\n## Deadlines\n\nFile your tax return online by 31 January "
              "and pay what you owe by the same date.",
}


@pytest.fixture(scope="module")
def embedder():
    """The embedded embedder in the default precision (``auto``: bfloat16 on a CPU with bf16
    instructions, else float32)."""
    name = "embedded:all-minilm-l6-v2"
    return SentenceTransformerEmbedder(resolve_model(name), name=name)


def test_sync_and_find_the_right_document(tmp_path, embedder):
    for name, text in DOCS.items():
        (tmp_path / name).write_text(text + "\n\n" + "More detail follows. " * 120)
    store = Store.open(tmp_path / "ix", IndexSettings(embedder.name, None, 200, 30), create=True)
    report = sync([tmp_path], store, embedder)
    assert report.ok and len(report.added) == 4
    store = Store.open(tmp_path / "ix")
    assert store.stats()["dimension"] == embedder.dimension == 384
    chunks = store.chunks(range(1, 1000)).values()
    assert max(embedder.count_tokens(c.text) for c in chunks) <= embedder.max_tokens == 254
    questions = {"How much does it cost to get a new passport?": "passport.md",
                 "I moved to a new flat, what do I tell the driving agency?": "driving.md",
                 "When is my tax return due?": "tax.md",
                 "I look after my mother full time, can I get money?": "benefits.md"}
    for mode in ("dense", "hybrid"):
        retriever = Retriever(store, embedder, mode=mode, k=1)
        for question, expected in questions.items():
            hit = retriever.search(question)[0]
            assert hit.source.endswith(expected), (mode, question, hit.source)
    top = Retriever(store, embedder, mode="dense", k=1).search("passport renewal fee")[0]
    assert top.location == "Passports > Renewing" and 0.3 < top.scores["dense"] <= 1.0


def test_a_bfloat16_embedder_gives_float32_vectors_close_to_float32_and_finds_the_same(
        tmp_path):
    name = "embedded:all-minilm-l6-v2"
    embedder = SentenceTransformerEmbedder(resolve_model(name), name=name, dtype="float32")
    half = SentenceTransformerEmbedder(resolve_model(name), name=name, dtype="bfloat16")
    texts = list(DOCS.values()) + ["When is my tax return due?"]
    full, reduced = embedder.encode(texts), half.encode(texts)
    assert reduced.dtype == full.dtype == "float32" and reduced.shape == full.shape
    assert (full * reduced).sum(axis=1).min() > 0.99  # both are unit vectors
    for file, text in DOCS.items():
        (tmp_path / file).write_text(text)
    store = Store.open(tmp_path / "ix", IndexSettings(embedder.name, None, 200, 30), create=True)
    assert sync([tmp_path], store, embedder).ok  # built in float32, searched in bfloat16
    hit = Retriever(Store.open(tmp_path / "ix"), half, mode="dense", k=1).search(
        "When is my tax return due?")[0]
    assert hit.source.endswith("tax.md")
