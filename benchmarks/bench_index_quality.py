"""Retrieval quality on ConditionalQA (dev slice): evidence recall@1/5/10 and MRR for dense,
BM25 and hybrid search, over two ways of indexing the same 12 gov.uk pages:

- ``pages``: each page as an HTML file through our loader and heading-aware chunker (what a
  user gets); a gold evidence passage counts as found when its text is inside a hit's chunk;
- ``passages``: one row per passage (``passages.jsonl`` as a .jsonl document), hit = passage.

Query = scenario + " " + question; gold = evidence_passage_ids (an evidence counts as found if any
of its ids is). Unanswerable questions without evidence are left out.

    /tmp/venv/bin/python benchmarks/bench_index_quality.py
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from chatbot.models import resolve_model  # noqa: E402
from index.embed import SentenceTransformerEmbedder  # noqa: E402
from index.manifest import IndexSettings  # noqa: E402
from index.search import Retriever  # noqa: E402
from index.store import Store  # noqa: E402
from index.sync import sync  # noqa: E402
from shared_data import SHARED

DATA = SHARED / "conditionalqa"
NAME = "embedded:all-minilm-l6-v2"
KS = (1, 5, 10)


def rows(name: str) -> list[dict]:
    return [json.loads(line) for line in open(DATA / name, encoding="utf-8")]


def norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def write_pages(folder: Path) -> None:
    for doc in rows("documents.jsonl"):
        html = (f"<html><head><title>{doc['title']}</title></head><body><main>"
                + "".join(doc["elements"]) + "</main></body></html>")
        (folder / f"{doc['doc_id']}.html").write_text(html, encoding="utf-8")


def write_passages(folder: Path) -> list[str]:
    passages = rows("passages.jsonl")
    with open(folder / "passages.jsonl", "w", encoding="utf-8") as handle:
        for p in passages:
            handle.write(json.dumps({"text": p["text"], "passage_id": p["passage_id"]}) + "\n")
    return [p["passage_id"] for p in passages]


def found_ids(hit, variant: str, passage_ids: list[str], texts: dict[str, str]) -> set[str]:
    """Gold passage ids a hit covers."""
    if variant == "passages":
        return {passage_ids[hit.chunk.metadata["row"] - 1]}
    doc = Path(hit.source).stem
    chunk = norm(hit.location + " " + hit.text)
    return {pid for pid, text in texts.items() if pid.startswith(doc + "#") and text and text in chunk}


def evaluate(retriever: Retriever, mode: str, variant: str, questions: list[dict],
             passage_ids: list[str], texts: dict[str, str]) -> dict[str, float]:
    recall = {k: 0.0 for k in KS}
    mrr = 0.0
    for q in questions:
        hits = retriever.search(q["scenario"] + " " + q["question"], k=max(KS), mode=mode)
        covered = [found_ids(h, variant, passage_ids, texts) for h in hits]
        gold = [set(ids) for ids in q["evidence_passage_ids"]]
        for k in KS:
            seen = set().union(*covered[:k]) if covered[:k] else set()
            recall[k] += sum(bool(g & seen) for g in gold) / len(gold)
        first = next((rank for rank, c in enumerate(covered, 1) if any(g & c for g in gold)), None)
        mrr += 1 / first if first else 0.0
    n = len(questions)
    return {**{f"R@{k}": recall[k] / n for k in KS}, "MRR": mrr / n}


def main() -> None:
    embedder = SentenceTransformerEmbedder(resolve_model(NAME), name=NAME)
    questions = [q for q in rows("questions.jsonl") if q["evidence_passage_ids"]]
    texts = {p["passage_id"]: norm(p["text"]) for p in rows("passages.jsonl")}
    print(f"\n{len(questions)} questions with evidence; embedder {NAME}; chunks of 200 tokens\n")
    print("| corpus | chunks | mode | R@1 | R@5 | R@10 | MRR |\n|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for variant in ("pages", "passages"):
            folder = Path(tmp) / variant
            folder.mkdir()
            passage_ids = write_passages(folder) if variant == "passages" else []
            if variant == "pages":
                write_pages(folder)
            store = Store.open(Path(tmp) / f"ix-{variant}", IndexSettings(NAME, None, 200, 30),
                               create=True)
            report = sync([folder], store, embedder)
            retriever = Retriever(Store.open(Path(tmp) / f"ix-{variant}"), embedder)
            for mode in ("dense", "bm25", "hybrid"):
                m = evaluate(retriever, mode, variant, questions, passage_ids, texts)
                print(f"| {variant} | {report.chunks} | {mode} | {m['R@1']:.3f} | {m['R@5']:.3f} "
                      f"| {m['R@10']:.3f} | {m['MRR']:.3f} |")


if __name__ == "__main__":
    main()
