"""Answers per minute through the HTTP API with 4 concurrent clients vs 1.

    /tmp/venv/bin/python benchmarks/bench_chat_concurrency.py [--answers 8] [--max-new-tokens 32]

One model instance serves every client; its lock runs one generation at a time, so concurrency
cannot multiply throughput on one CPU model: what it shows is that no request is lost or
starved, what queueing does to each request's latency, and whatever retrieval, prompt rendering
and logging overlap with another request's generation. Both runs answer the same number of
questions (non-streaming, greedy) on the same server.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from chat_bench_bot import QUESTION, embedded_engine, median, served_api  # noqa: E402


def run_clients(base_url: str, model: str, clients: int, answers: int) -> dict:
    """``answers`` questions split over ``clients`` threads; wall time and latencies."""
    import openai

    latencies: list[float] = []
    failures: list[str] = []

    def client_loop(count: int) -> None:
        client = openai.OpenAI(base_url=base_url, api_key="none", max_retries=0, timeout=900)
        for _ in range(count):
            started = time.perf_counter()
            try:
                reply = client.chat.completions.create(
                    model=model, messages=[{"role": "user", "content": QUESTION}])
                assert reply.choices[0].message.content
                latencies.append(time.perf_counter() - started)
            except Exception as exc:  # counted and reported, never hidden
                failures.append(repr(exc))

    shares = [answers // clients + (i < answers % clients) for i in range(clients)]
    threads = [threading.Thread(target=client_loop, args=(n,)) for n in shares]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    return {"wall_s": wall, "per_minute": len(latencies) * 60 / wall,
            "median_s": median(latencies), "max_s": max(latencies, default=float("nan")),
            "answered": len(latencies), "failures": failures}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--answers", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    engine = embedded_engine(args.threads, args.max_new_tokens)
    results = {}
    with served_api(engine) as base_url:
        for clients in (1, 4):
            results[clients] = run_clients(base_url, engine.default_variant, clients,
                                           args.answers)
    print(f"SmolLM2-135M fp32, {args.answers} answers per run, max {args.max_new_tokens} new "
          f"tokens, greedy, torch threads {args.threads}, non-streaming API\n")
    print("| clients | answered | failures | wall, s | answers/min | median latency, s | "
          "max latency, s | answers/min vs 1 client |")
    print("|---|---|---|---|---|---|---|---|")
    for clients, r in results.items():
        print(f"| {clients} | {r['answered']} | {len(r['failures'])} | {r['wall_s']:.1f} | "
              f"{r['per_minute']:.1f} | {r['median_s']:.2f} | {r['max_s']:.2f} | "
              f"{r['per_minute'] / results[1]['per_minute']:.2f} |")
    for clients, r in results.items():
        for failure in r["failures"][:3]:
            print(f"- {clients} clients, failure: {failure}")


if __name__ == "__main__":
    main()
