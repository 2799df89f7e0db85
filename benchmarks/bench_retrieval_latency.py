"""End-to-end retrieval latency at 1.1k and 100k chunks: what one chat turn waits for before its
prompt is built (query embedding, dense search, BM25, fusion, passage assembly; no reranker).

The search path is the engine's own: ``IndexSearch`` over the bot's index, both built from
``configs/default.yaml`` the way ``app/build.py`` builds them (MiniLM embedder, hybrid rrf 2:1:1
with the best-sentence ranking, neighbour merging, ``index_type: auto``: exact search below 100k
chunks, HNSW from there). Only the store is built cheaply, the same way at both sizes (1,113
chunks is the baseline, the size of the dev passages): each chunk is 3-5 real ConditionalQA
passages (~120 words) joined, its vector the normalised mean of their real MiniLM embeddings plus
Gaussian noise, its sentence vectors those passages' own embeddings plus noise (a passage is a
paragraph or list item), written straight into the store (embedding 100k chunks would take an
hour on 2 cores). Texts drawn from one 1.1k-passage
vocabulary make every query term common, so BM25 does more work here than on a varied corpus.

Queries are the 60 dev questions (scenario + question), each embedded for real, single queries
as the engine sends them; p50/p95 over ``--rounds`` passes, with each stage's share (wall time),
for the default fusion, the same without the best-sentence ranking (its baseline) and, where
the embedder runs on ONNX Runtime (``embedder_runtime: auto`` on a CPU in float32), the default
fusion with the embedder on torch (the runtime's baseline); and the process's CPU time per
query, which a busy shared machine inflates less than wall time.

    .venv/bin/python benchmarks/bench_retrieval_latency.py [--sizes 1113,100000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from chat_bench_bot import embedded_config  # noqa: E402
from index.fusion import Fusion  # noqa: E402
from shared_data import SHARED  # noqa: E402

DATA = SHARED / "conditionalqa"
CHUNKS_PER_DOCUMENT = 10
RANKINGS = {"chunks, BM25, best sentence (default)": Fusion(),
            "chunks, BM25": Fusion(sentence_weight=0.0)}
"""The default fusion, and the same without its best-sentence ranking: its baseline."""
NOISE = 0.5
"""Norm of the noise added to each chunk vector (as in bench_index_latency.py): neighbourhoods
stay real, no two vectors are the same."""


def rows(name: str) -> list[dict]:
    return [json.loads(line) for line in open(DATA / name, encoding="utf-8")]


def passages(embedder) -> tuple[list[str], np.ndarray]:
    texts = [p["text"] for p in rows("passages.jsonl") if p["text"].strip()]
    return texts, embedder.encode(texts)


def fill(store, texts: list[str], vectors: np.ndarray, size: int, seed: int = 0) -> None:
    """``size`` chunks of joined real passages in documents of ten, written in one sync."""
    from index.context import context_line
    from index.types import Chunk

    rng = np.random.default_rng(seed)
    with store.transaction():
        for doc in range(0, size, CHUNKS_PER_DOCUMENT):
            count = min(CHUNKS_PER_DOCUMENT, size - doc)
            picks = [rng.choice(len(texts), rng.integers(3, 6), replace=False)
                     for _ in range(count)]
            title = f"Synthetic page {doc // CHUNKS_PER_DOCUMENT}"
            chunks = [Chunk(f"{doc}-{i}", f"synthetic/{doc}.html",
                            "\n\n".join(texts[j] for j in pick), f"Section {i}", f"{doc}-{i}",
                            {"index": i, "title": title,
                             "context": context_line(title, [f"Section {i}"])})
                      for i, pick in enumerate(picks)]
            means = np.stack([vectors[pick].mean(axis=0) for pick in picks])
            sentences = [_noisy(vectors[pick], rng).astype(np.float16) for pick in picks]
            store.add(f"synthetic/{doc}.html", f"{doc}", 1, chunks,
                      _noisy(means, rng).astype(np.float32), sentences)


def _noisy(vectors: np.ndarray, rng) -> np.ndarray:
    """``vectors`` moved by Gaussian noise of norm ``NOISE``, normalised again."""
    moved = vectors + rng.normal(0, NOISE / np.sqrt(vectors.shape[1]), vectors.shape)
    return moved / np.linalg.norm(moved, axis=1, keepdims=True)


class Stopwatch:
    """Wraps methods of live objects and adds up the seconds each stage spends per query."""

    def __init__(self):
        self.spent: dict[str, float] = defaultdict(float)

    def wrap(self, owner, method: str, stage: str) -> None:
        inner = getattr(owner, method)

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.spent[stage] += time.perf_counter() - start

        setattr(owner, method, timed)


def measure(search, retriever, questions: list[str], rounds: int) -> dict[str, list[float]]:
    """Milliseconds per query: ``total`` (wall and CPU) and each stage's wall time (the rest is
    fusion and assembly)."""
    import index.search as search_module

    watch = Stopwatch()
    watch.wrap(retriever.embedder, "encode", "embedding")
    watch.wrap(retriever.store, "search", "dense")
    watch.wrap(retriever, "_bm25", "bm25")
    watch.wrap(search_module, "_top", "bm25")  # picking the BM25 ranking's best chunks
    watch.wrap(retriever.store, "sentence_vectors", "sentences")
    times: dict[str, list[float]] = defaultdict(list)
    for _ in range(rounds):
        for question in questions:
            watch.spent.clear()
            start, start_cpu = time.perf_counter(), time.process_time()
            search(question, 4)
            total = time.perf_counter() - start
            times["total"].append(total * 1000)
            times["total CPU"].append((time.process_time() - start_cpu) * 1000)
            for stage in ("embedding", "dense", "bm25", "sentences"):
                times[stage].append(watch.spent[stage] * 1000)
            times["after embedding"].append((total - watch.spent["embedding"]) * 1000)
            times["fusion + passages"].append((total - sum(watch.spent.values())) * 1000)
    return times


def main() -> None:
    from app.build import bot_index
    from chatbot.indexing import IndexSearch, open_embedder
    from index.store import Store

    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1113,100000")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--embedder-dtype", choices=["auto", "float32", "bfloat16"],
                        default="auto", help="models.embedder_dtype (default: the config's "
                        "auto, bfloat16 on a CPU with bf16 instructions)")
    parser.add_argument("--embedder-runtime", choices=["auto", "torch", "onnx"],
                        default="auto", help="models.embedder_runtime (default: the config's "
                        "auto, ONNX Runtime where the embedder computes in float32 on the CPU)")
    args = parser.parse_args()
    questions = [q["scenario"] + " " + q["question"] for q in rows("questions.jsonl")]
    stages = ("total", "total CPU", "embedding", "after embedding", "dense", "bm25", "sentences",
              "fusion + passages")
    configured = bot_index(embedded_config(None))
    spec = replace(configured.embedder, dtype=args.embedder_dtype, runtime=args.embedder_runtime)
    embedder = open_embedder(spec)
    runs = [(ranked_by, fusion, embedder) for ranked_by, fusion in RANKINGS.items()]
    if embedder.runtime_in_use == "onnx":
        runs.insert(1, ("chunks, BM25, best sentence; embedder on torch", Fusion(),
                        open_embedder(replace(spec, runtime="torch"))))
    print(f"\n{len(questions)} questions x {args.rounds} rounds, k=4, default config "
          f"(hybrid rrf 2:1:1, neighbour merging, no reranker), embedder_dtype "
          f"{args.embedder_dtype}, embedder_runtime {args.embedder_runtime}: the embedder "
          f"computes in {embedder.precision} on {embedder.runtime_in_use}\n")
    print("| chunks | FAISS | build s | ranked by | " + " | ".join(
        f"{s} p50 / p95 ms" for s in stages) + " |\n|---|---|---|---|" + "---|" * len(stages))
    texts, vectors = passages(embedder)
    for size in map(int, args.sizes.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            index = replace(configured, directory=Path(tmp) / "index")
            start = time.perf_counter()
            fill(Store.open(index.directory, index.settings, create=True), texts, vectors, size)
            built = time.perf_counter() - start
            for ranked_by, fusion, run_embedder in runs:
                search = IndexSearch(replace(index, search=replace(index.search, fusion=fusion)),
                                     run_embedder)
                search("warm-up", 4)  # opens the store, FAISS and BM25 files
                times = measure(search, search.retriever, questions, args.rounds)
                kind = search.retriever.store.kind
                cells = " | ".join(f"{np.percentile(times[stage], 50):.1f} / "
                                   f"{np.percentile(times[stage], 95):.1f}" for stage in stages)
                print(f"| {size:,} | {kind} | {built:.0f} | {ranked_by} | {cells} |", flush=True)


if __name__ == "__main__":
    main()
