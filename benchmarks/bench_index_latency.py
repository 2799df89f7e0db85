"""Query latency p50/p95 of exact (flat) vs. HNSW search, HNSW recall@10 against exact, and
HNSW build time, on clustered vectors sampled around real MiniLM embeddings.

HNSW recall on uniform random vectors means nothing (no neighbourhoods), so every vector is a
real embedding of a ConditionalQA passage plus Gaussian noise, renormalized; queries are fresh
samples of the same kind. Single queries, as the chat engine sends them.

    .venv/bin/python benchmarks/bench_index_latency.py [--sizes 100000,1000000] [--hnsw-max 100000]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from shared_data import SHARED

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DATA = SHARED / "conditionalqa"
BUILD_THREADS = 2
NAME = "embedded:all-minilm-l6-v2"


def real_embeddings() -> np.ndarray:
    from chatbot.models import resolve_model
    from index.embed import SentenceTransformerEmbedder

    texts = [json.loads(line)["text"] for line in open(DATA / "passages.jsonl", encoding="utf-8")]
    return SentenceTransformerEmbedder(resolve_model(NAME), name=NAME).encode(texts)


def samples(centers: np.ndarray, count: int, noise: float, rng) -> np.ndarray:
    """``count`` unit vectors around random centers; ``noise`` is the noise vector's norm."""
    picked = centers[rng.integers(0, len(centers), count)]
    vectors = picked + rng.normal(0, noise / np.sqrt(centers.shape[1]), picked.shape)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors.astype(np.float32)


def latencies(index, queries: np.ndarray, k: int, params) -> tuple[list[float], np.ndarray]:
    """p50/p95 in ms of wall time and of this thread's CPU time (immune to a busy machine)."""
    import faiss

    faiss.omp_set_num_threads(1)  # one query: its work stays on this thread
    found, wall, cpu = [], [], []
    for q in queries:
        start, start_cpu = time.perf_counter(), time.thread_time()
        _, ids = index.search(q[None, :], k, params=params)
        wall.append(time.perf_counter() - start)
        cpu.append(time.thread_time() - start_cpu)
        found.append(ids[0])
    faiss.omp_set_num_threads(BUILD_THREADS)
    return [float(np.percentile(np.array(t) * 1000, p)) for t in (wall, cpu) for p in (50, 95)], \
        np.array(found)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)]))


def build(kind: str, vectors_of, size: int, m: int):
    import faiss

    d = 384
    inner = (faiss.IndexHNSWFlat(d, m, faiss.METRIC_INNER_PRODUCT) if kind == "hnsw"
             else faiss.IndexFlatIP(d))
    index = faiss.IndexIDMap2(inner)  # as the store keeps it
    start = time.perf_counter()
    for begin in range(0, size, 100_000):
        batch = vectors_of(begin, min(size, begin + 100_000))
        index.add_with_ids(batch, np.arange(begin, begin + len(batch), dtype=np.int64))
    return index, time.perf_counter() - start


def _ms(times: list[float]) -> str:
    return " | ".join(f"{t:.2f}" for t in times)


def main() -> None:
    import faiss

    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--hnsw-max", type=int, default=100_000,
                        help="largest size to build HNSW for (1M takes ~9 min on 2 idle cores)")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--noise", type=float, default=0.5)
    parser.add_argument("--m", type=int, default=32)
    parser.add_argument("--ef", default="16,32,64,128,256")
    args = parser.parse_args()
    centers = real_embeddings()
    rng = np.random.default_rng(0)
    queries = samples(centers, args.queries, args.noise, rng)
    print(f"\n{len(centers)} real embeddings as centers, noise norm {args.noise}, "
          f"{args.queries} single queries, k=10, faiss threads {faiss.omp_get_max_threads()}\n")
    print("| vectors | index | efSearch | build s (wall) | p50 ms | p95 ms | CPU p50 ms "
          "| CPU p95 ms | recall@10 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for size in map(int, args.sizes.split(",")):
        def vectors_of(begin: int, end: int, size=size) -> np.ndarray:
            return samples(centers, end - begin, args.noise, np.random.default_rng(size + begin))

        exact, seconds = build("flat", vectors_of, size, args.m)
        n = args.queries if size <= 200_000 else min(args.queries, 50)
        times, truth = latencies(exact, queries[:n], 10, faiss.SearchParameters())
        print(f"| {size:,} | flat (exact) | - | {seconds:.1f} | {_ms(times)} | 1.000 |", flush=True)
        del exact
        if size > args.hnsw_max:
            continue
        hnsw, seconds = build("hnsw", vectors_of, size, args.m)
        for ef in map(int, args.ef.split(",")):
            params = faiss.SearchParametersHNSW(efSearch=ef)
            times, found = latencies(hnsw, queries[:n], 10, params)
            print(f"| {size:,} | HNSW M={args.m} | {ef} | {seconds:.1f} | {_ms(times)} "
                  f"| {recall(found, truth):.3f} |", flush=True)
        del hnsw


if __name__ == "__main__":
    main()
