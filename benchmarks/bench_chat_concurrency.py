"""Answers per minute and time to first token with 1-16 concurrent API clients, batched vs one
at a time.

    .venv/bin/python benchmarks/bench_chat_concurrency.py [--clients 1 4 8 16] [--threads 2]

Two engines on the embedded SmolLM2-135M, one with ``models.max_batch: 8`` (continuous
batching, chatbot/batching.py) and one with ``max_batch: 1`` (one answer at a time), each served
through the OpenAI-compatible API, answer two shapes: a short prompt and a long answer (no
passages, ``--long-tokens`` new tokens) and a RAG-length prompt (four guide passages, ~700
tokens) and a short answer (``--short-tokens``). At each level every client sends one streaming
request at once (the 1-client level sends two, one after the other); time to first token is
measured at the client, to the first piece of text.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from chat_bench_bot import QUESTION, embedded_config, guide_passages, served_api  # noqa: E402


def build(max_batch: int, threads: int | None):
    """An engine on the embedded model; its search returns what ``engine.passages`` holds."""
    from app.build import build_engine

    config = embedded_config(threads)
    config.models.max_batch = max_batch
    holder = {"passages": []}
    engine = build_engine(config, search=lambda query, k: holder["passages"][:k])
    engine.answer("warm-up", "Hello", None).result()  # load the model outside the timings
    return engine, holder


def run_clients(base_url: str, model: str, clients: int) -> dict:
    """Each client sends one streaming request at once (two in turn for a lone client)."""
    import openai

    ttfts: list[float] = []
    failures: list[str] = []

    def client_loop(count: int) -> None:
        client = openai.OpenAI(base_url=base_url, api_key="none", max_retries=0, timeout=900)
        for _ in range(count):
            started = time.perf_counter()
            try:
                first = None
                for chunk in client.chat.completions.create(
                        model=model, stream=True,
                        messages=[{"role": "user", "content": QUESTION}]):
                    if first is None and chunk.choices and chunk.choices[0].delta.content:
                        first = time.perf_counter() - started
                assert first is not None
                ttfts.append(first)
            except Exception as exc:  # counted and reported, never hidden
                failures.append(repr(exc))

    threads = [threading.Thread(target=client_loop, args=(2 if clients == 1 else 1,))
               for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    return {"per_minute": len(ttfts) * 60 / wall, "p50": percentile(ttfts, 50),
            "p95": percentile(ttfts, 95), "answered": len(ttfts), "failures": failures}


def percentile(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--long-tokens", type=int, default=64)
    parser.add_argument("--short-tokens", type=int, default=16)
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    shapes = {"short prompt, long answer": ([], args.long_tokens),
              "RAG prompt, short answer": (guide_passages(), args.short_tokens)}
    rows = []
    for max_batch in (args.max_batch, 1):
        engine, holder = build(max_batch, args.threads)
        with served_api(engine) as base_url:
            for shape, (passages, new_tokens) in shapes.items():
                holder["passages"] = passages
                engine.settings = replace(engine.settings, max_new_tokens=new_tokens)
                for clients in args.clients:
                    result = run_clients(base_url, engine.default_variant, clients)
                    rows.append((shape, max_batch, clients, result))
                    print(f"done: {shape}, max_batch {max_batch}, {clients} clients",
                          file=sys.stderr, flush=True)
        engine.stop_all()
        del engine

    print(f"SmolLM2-135M fp32, streaming API, greedy, torch threads {args.threads or 'default'}; "
          f"long answer {args.long_tokens} tokens, short {args.short_tokens}\n")
    print("| shape | max_batch | clients | answered | failures | answers/min | vs 1 client | "
          "TTFT p50, s | TTFT p95, s | p95 vs 1 client |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    base = {(shape, mb): r for shape, mb, clients, r in rows if clients == args.clients[0]}
    for shape, max_batch, clients, r in rows:
        b = base[(shape, max_batch)]
        print(f"| {shape} | {max_batch} | {clients} | {r['answered']} | {len(r['failures'])} | "
              f"{r['per_minute']:.1f} | {r['per_minute'] / b['per_minute']:.2f} | "
              f"{r['p50']:.2f} | {r['p95']:.2f} | {r['p95'] / b['p95']:.2f} |")
    for shape, max_batch, clients, r in rows:
        for failure in r["failures"][:3]:
            print(f"- {shape}, max_batch {max_batch}, {clients} clients: {failure}")


if __name__ == "__main__":
    main()
