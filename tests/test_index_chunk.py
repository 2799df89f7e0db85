"""Chunks fit the embedder's window (in its own tokens) and keep where they came from."""

from __future__ import annotations

import random

import pytest
from index_helpers import CountingEmbedder

from index.chunk import MAX_CHARS_PER_TOKEN, chunk_documents
from index.types import Document


def chunks_of(doc: Document, embedder, size: int = 40, overlap: int = 8):
    return chunk_documents([doc], embedder.count_tokens, embedder.max_tokens, size, overlap)


def test_no_chunk_exceeds_size_and_neighbours_overlap():
    embedder = CountingEmbedder(max_tokens=128)
    words = [f"word{i}" for i in range(1000)]
    chunks = chunks_of(Document("a.txt", " ".join(words), {"format": "text"}), embedder)
    assert len(chunks) > 20
    assert max(embedder.count_tokens(c.text) for c in chunks) <= 40
    assert all(set(a.text.split()[-3:]) <= set(b.text.split()) for a, b in zip(chunks, chunks[1:]))
    assert " ".join(chunks[0].text.split()[:3]) == "word0 word1 word2"


def test_chunk_size_is_capped_by_the_embedders_window():
    embedder = CountingEmbedder(max_tokens=16)
    chunks = chunks_of(Document("a.txt", "lorem ipsum " * 200, {"format": "text"}), embedder,
                       size=200, overlap=30)
    assert max(embedder.count_tokens(c.text) for c in chunks) <= 16


def test_markdown_heading_path_is_the_location():
    text = ("# Guide\n\nIntro words.\n\n## Install\n\n### Linux\n\nUse apt.\n\n"
            "### Windows\n\nUse the installer.\n\n# FAQ\n\nAsk us.")
    chunks = chunks_of(Document("g.md", text, {"format": "markdown"}), CountingEmbedder())
    assert [(c.location, c.text) for c in chunks] == [
        ("Guide", "Intro words."), ("Guide > Install > Linux", "Use apt."),
        ("Guide > Install > Windows", "Use the installer."), ("FAQ", "Ask us.")]


def test_a_markdown_file_of_headings_alone_is_indexed_by_its_headings():
    text = "# Widgets\n\n## Care and cleaning\n"
    chunks = chunks_of(Document("w.md", text, {"format": "markdown"}), CountingEmbedder())
    assert [(c.location, c.text) for c in chunks] == [("", "Widgets\nCare and cleaning")]


def test_a_string_without_spaces_is_split_by_characters_too(minilm_tokenizer):
    """MiniLM reads a word of over 100 characters as one [UNK]: by tokens alone 20,000
    characters of base64 would be one chunk, too long for any prompt."""
    def count(text: str) -> int:
        return len(minilm_tokenizer(text, add_special_tokens=False)["input_ids"])

    blob = "iVBORw0KGgo" * 2000
    text = f"Intro words here.\n\n{blob}\n\nClosing words."
    assert count(blob) == 1
    chunks = chunk_documents([Document("b.txt", text, {"format": "text"})], count, 254, 200, 0)
    assert max(len(c.text) for c in chunks) <= 200 * MAX_CHARS_PER_TOKEN
    assert "".join(c.text for c in chunks[1:-1]) == blob  # split, nothing lost
    assert chunks[0].text == "Intro words here." and chunks[-1].text == "Closing words."


def test_pdf_chunks_name_their_page_and_never_cross_one():
    text = "alpha " * 30 + "\n\n" + "beta " * 30
    doc = Document("m.pdf", text.strip(), {"format": "pdf", "pages": [(0, 1), (182, 2)]})
    chunks = chunks_of(doc, CountingEmbedder(), size=20, overlap=4)
    assert {c.location for c in chunks} == {"page 1", "page 2"}
    assert all(("alpha" in c.text) != ("beta" in c.text) for c in chunks)
    assert all("alpha" in c.text for c in chunks if c.location == "page 1")


def test_rows_name_their_row_and_ids_are_stable():
    doc = Document("faq.csv", "Reset it in settings.", {"format": "text", "row": 7})
    first, again = chunks_of(doc, CountingEmbedder()), chunks_of(doc, CountingEmbedder())
    assert first[0].location == "row 7" and first[0].metadata["row"] == 7
    assert first == again


@pytest.fixture(scope="module")
def minilm_tokenizer():
    from transformers import AutoTokenizer

    from chatbot.models import resolve_model

    return AutoTokenizer.from_pretrained(resolve_model("embedded:all-minilm-l6-v2"))


def test_real_tokenizer_never_truncates(minilm_tokenizer):
    """With MiniLM's WordPiece tokenizer, every chunk fits its 256-token window whole."""
    def count(text: str) -> int:
        return len(minilm_tokenizer(text, add_special_tokens=False)["input_ids"])

    rng = random.Random(0)
    vocabulary = ["reimbursement", "Überweisung", "naïve", "3.14159", "e-mail", "x" * 40,
                  "pneumonoultramicroscopic", "的", "—", "(see §4.2)", "data", "a"]
    text = "\n\n".join(" ".join(rng.choice(vocabulary) for _ in range(rng.randint(5, 400)))
                       for _ in range(30))
    max_tokens = 256 - 2  # [CLS] and [SEP]
    chunks = chunk_documents([Document("t.txt", text, {"format": "text"})], count, max_tokens,
                             200, 30)
    assert len(chunks) > 10
    lengths = [len(minilm_tokenizer(c.text)["input_ids"]) for c in chunks]
    assert max(lengths) <= 256
    assert max(lengths) > 150  # chunks are sized by tokens, not cut far too small


def test_a_chunk_and_its_context_fit_the_embedders_window_together():
    embedder = CountingEmbedder(max_tokens=48)
    heading = " ".join(f"h{i}" for i in range(20))
    doc = Document("g.md", f"# {heading}\n\n" + "lorem ipsum " * 100,
                   {"format": "markdown", "title": "Guide"})
    chunks = chunks_of(doc, embedder, size=40, overlap=8)
    assert chunks[0].metadata["context"] == f"Guide > {heading}"
    assert max(embedder.count_tokens(f"{c.metadata['context']}\n\n{c.text}")
               for c in chunks) <= 48
    assert min(embedder.count_tokens(c.text) for c in chunks[:-1]) >= 20  # half the size at least
