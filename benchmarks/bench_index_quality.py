"""Retrieval quality on ConditionalQA's dev slice, among distractors: the 12 question pages and
the 12 distractor pages (``distractor_documents.jsonl``), each an HTML file through our loader
and heading-aware chunker (200-token chunks, all-MiniLM-L6-v2), scored by ``index/evaluate.py``
(what ``chatbot index eval`` runs) at k = 2, 4, 8.

Each row adds one change to the one above it: contextual chunks (title and heading path
embedded and BM25-indexed), BM25 stemming, the fusion's weights, each chunk's best sentence as a
third ranking, neighbour merging, a word cap per merged passage (the default is on in the last
rows, with and without the best-sentence ranking). Query =
scenario + " " + question; the gold sentences are the evidence elements' texts, counted only in
passages of the question's own page; questions without evidence are left out.

    .venv/bin/python benchmarks/bench_index_quality.py [--embedder-dtype float32]

Another slice in the same files (a holdout of other pages) is measured the same way from
``$BENCH_SHARED_DATA/conditionalqa`` (``benchmarks/shared_data.py``).
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from chatbot.models import resolve_model  # noqa: E402
from index.bm25 import ENGLISH, STOPWORDS  # noqa: E402
from index.context import NONE, TITLE_HEADINGS  # noqa: E402
from index.embed import SentenceTransformerEmbedder  # noqa: E402
from index.evaluate import EvalQuestion, evaluate  # noqa: E402
from index.fusion import Fusion  # noqa: E402
from index.manifest import IndexSettings  # noqa: E402
from index.passages import MAX_WORDS  # noqa: E402
from index.search import Retriever  # noqa: E402
from index.store import Store  # noqa: E402
from index.sync import sync  # noqa: E402
from shared_data import SHARED  # noqa: E402

DATA = SHARED / "conditionalqa"
NAME = "embedded:all-minilm-l6-v2"
KS = (2, 4, 8)
EQUAL = Fusion("rrf", 1.0, 1.0, 0.0)
CHUNKS_ONLY = Fusion(sentence_weight=0.0)
"""The default dense and BM25 weights without the best-sentence ranking."""
UNCAPPED = 10**6


@dataclass(frozen=True)
class Row:
    step: str
    index: str
    """``plain``, ``context`` or ``stemmed`` (see :func:`build`)."""
    mode: str
    fusion: Fusion = EQUAL
    merge: bool = False
    max_words: int = UNCAPPED
    min_score: float | None = None


# Each step keeps the one before it; the "fusion" rows are the weights tried, Fusion() the
# default chosen from them; the word caps tried, MAX_WORDS the default.
ROWS = [
    *[Row("before: plain chunks", "plain", mode) for mode in ("dense", "bm25", "hybrid")],
    *[Row("+ contextual chunks", "context", mode) for mode in ("dense", "bm25", "hybrid")],
    *[Row("+ BM25 stemming", "stemmed", mode) for mode in ("bm25", "hybrid")],
    *[Row("fusion", "stemmed", "hybrid", Fusion("rrf", w, 1.0, 0.0)) for w in (1.5, 2.0, 3.0)],
    *[Row("fusion", "stemmed", "hybrid", Fusion("score", w, 1 - w, 0.0))
      for w in (0.5, 0.7, 0.8)],
    *[Row("+ best-sentence ranking", "stemmed", "hybrid", Fusion(sentence_weight=w))
      for w in (0.5, 1.0, 1.5)],
    Row("+ neighbour merging, no word cap", "stemmed", "hybrid", Fusion(), merge=True),
    *[Row("+ word cap per passage", "stemmed", "hybrid", Fusion(), merge=True, max_words=words)
      for words in (100, MAX_WORDS, 160)],
    Row("default config (min_score 0.25)", "stemmed", "hybrid", Fusion(), merge=True,
        max_words=MAX_WORDS, min_score=0.25),
    Row("default config without the best-sentence ranking", "stemmed", "hybrid", CHUNKS_ONLY,
        merge=True, max_words=MAX_WORDS, min_score=0.25),
]


def rows(name: str) -> list[dict]:
    return [json.loads(line) for line in open(DATA / name, encoding="utf-8")]


def norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def found_ids(hit, variant: str, passage_ids: list[str], texts: dict[str, str]) -> set[str]:
    """Gold passage ids a hit covers (bench_followup.py's hit test)."""
    if variant == "passages":
        return {passage_ids[hit.chunk.metadata["row"] - 1]}
    doc = Path(hit.source).stem
    chunk = norm(hit.location + " " + hit.text)
    return {pid for pid, text in texts.items()
            if pid.startswith(doc + "#") and text and text in chunk}


def write_pages(folder: Path) -> None:
    folder.mkdir(parents=True)
    for doc in rows("documents.jsonl") + rows("distractor_documents.jsonl"):
        html = (f"<html><head><title>{doc['title']}</title></head><body><main>"
                + "".join(doc["elements"]) + "</main></body></html>")
        (folder / f"{doc['doc_id']}.html").write_text(html, encoding="utf-8")


def questions() -> list[EvalQuestion]:
    """Each evidence's text (its ids all name the same element text) as a gold sentence."""
    texts = {p["passage_id"]: p["text"] for p in rows("passages.jsonl")}
    found = []
    for q in rows("questions.jsonl"):
        gold = tuple(dict.fromkeys(texts[ids[0]] for ids in q["evidence_passage_ids"]
                                   if texts[ids[0]].strip()))
        if gold:
            found.append(EvalQuestion(q["scenario"] + " " + q["question"], gold,
                                      source=f"{q['doc_id']}.html"))
    return found


class QueryCache:
    """The embedder, remembering query vectors: every row searches the same questions."""

    def __init__(self, embedder: SentenceTransformerEmbedder):
        self.embedder, self.name = embedder, embedder.name
        self._one = functools.lru_cache(maxsize=None)(lambda text: embedder.encode([text]))

    def __getattr__(self, name: str):
        return getattr(self.embedder, name)

    def encode(self, texts: list[str]):
        return self._one(texts[0]) if len(texts) == 1 else self.embedder.encode(texts)


def build(root: Path, embedder) -> dict[str, Path]:
    """Three indexes of the pages: plain chunks, contextual chunks (with sentence vectors), and
    contextual chunks with a stemmed BM25 (converted from the second by a sync: only BM25 is
    rebuilt)."""
    pages, built = root / "pages", {}
    write_pages(pages)
    for name, context in (("plain", NONE), ("context", TITLE_HEADINGS)):
        built[name] = root / name
        settings = IndexSettings(NAME, None, 200, 30, context=context, bm25_analyzer=STOPWORDS,
                                 sentence_vectors=context != NONE)
        sync([pages], Store.open(built[name], settings, create=True), embedder)
    built["stemmed"] = root / "stemmed"
    shutil.copytree(built["context"], built["stemmed"])
    stemmed = IndexSettings(NAME, None, 200, 30, context=TITLE_HEADINGS, bm25_analyzer=ENGLISH)
    report = sync([pages], Store.open(built["stemmed"], stemmed), embedder)
    assert report.embedded == 0 and Store.open(built["stemmed"]).settings.bm25_analyzer == ENGLISH
    return built


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--embedder-dtype", choices=["auto", "float32", "bfloat16"],
                        default="auto", help="models.embedder_dtype for indexing and queries")
    args = parser.parse_args()
    model = SentenceTransformerEmbedder(resolve_model(NAME), name=NAME, dtype=args.embedder_dtype)
    embedder = QueryCache(model)
    evalset = questions()
    with tempfile.TemporaryDirectory() as tmp:
        indexes = build(Path(tmp), embedder)
        chunks = Store.open(indexes["plain"]).manifest.counts.chunks
        pages, distractors = len(rows("documents.jsonl")), len(rows("distractor_documents.jsonl"))
        print(f"\n{len(evalset)} questions with evidence; {pages + distractors} pages ({pages} "
              f"with questions, {distractors} distractors) from {DATA}, {chunks} chunks; "
              f"embedder {NAME} in {model.precision}\n")
        print("| step | mode | fusion | R@2 | R@4 | R@8 | hit@2 | hit@4 | MRR | words@2/4/8 |\n"
              "|---|---|---|---|---|---|---|---|---|---|")
        for row in ROWS:
            retriever = Retriever(Store.open(indexes[row.index]), embedder, mode=row.mode,
                                  fusion=row.fusion, merge_neighbours=row.merge,
                                  merge_max_words=row.max_words, min_score=row.min_score)
            m = evaluate(lambda query, k: retriever.search(query, k=k), evalset, KS)
            fusion = row.fusion
            weights = [fusion.dense_weight, fusion.bm25_weight] + (
                [fusion.sentence_weight] if fusion.sentence_weight else [])
            fused = (f"{fusion.method} {':'.join(f'{w:g}' for w in weights)}"
                     if row.mode == "hybrid" else "")
            merge = (" + merge" + (f" <= {row.max_words} words" if row.max_words < UNCAPPED
                                    else " (uncapped)")) if row.merge else ""
            print(f"| {row.step} | {row.mode}{merge} | {fused} | {m.recall[2]:.3f} "
                  f"| {m.recall[4]:.3f} | {m.recall[8]:.3f} | {m.hit[2]:.3f} | {m.hit[4]:.3f} "
                  f"| {m.mrr:.3f} | {'/'.join(f'{m.words[k]:.0f}' for k in KS)} |")


if __name__ == "__main__":
    main()
