"""Answers per minute and time to first token with 1-16 concurrent API clients, batched vs one
at a time, on the embedded default.

    .venv/bin/python benchmarks/bench_chat_concurrency.py [--clients 1 4 8 16] [--seconds 90]

Two engines on the embedded SmolLM2-135M with configs/default.yaml's generation (greedy, up to
256 new tokens, the model's own end), one with ``models.max_batch: 8`` (continuous batching,
chatbot/batching.py) and one with ``max_batch: 1`` (one answer at a time), each served through
the OpenAI-compatible API. Every request is a RAG prompt: four passages of the user guide
(~480 tokens) and one of a dozen questions, each client going through them in its own order.
Closed-loop clients (load_clients.py): each asks again when its answer ends, clients start
over a ramp and only the window after it counts. At each level the two engines run one after
the other, in alternating order, so load from other work on the machine falls on both.
``--shape short`` drops the passages (a short prompt, the answer dominates).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from chat_bench_bot import embedded_config, guide_passages, served_api  # noqa: E402
from load_clients import closed_loop  # noqa: E402

QUESTIONS = [
    "How do I index my documents, and what happens when I sync again?",
    "Which file formats can the index read?",
    "What happens to a document I delete from the folder?",
    "How are long documents split into chunks?",
    "Can I index a folder of PDFs and Markdown files together?",
    "How do I rebuild the index from scratch?",
    "What does the sync command print when nothing changed?",
    "Where is the index stored on disk?",
    "How do I see which documents are indexed?",
    "Does indexing need a GPU?",
    "What happens if indexing is interrupted?",
    "How do I index a single file?",
]


def build(max_batch: int, threads: int | None, passages: list):
    from app.build import build_engine

    config = embedded_config(threads)
    config.models.max_batch = max_batch
    engine = build_engine(config, search=lambda query, k: passages[:k])
    engine.answer("warm-up", "Hello", None).result()  # load the model outside the timings
    return engine


def asker(base_url: str, model: str):
    """``ask(client, n)`` streaming from our API through the openai client."""
    import openai

    client = openai.OpenAI(base_url=base_url, api_key="none", max_retries=0, timeout=900)

    def ask(index: int, n: int):
        question = QUESTIONS[(index * 5 + n) % len(QUESTIONS)]
        with client.chat.completions.create(
                model=model, stream=True,
                messages=[{"role": "user", "content": question}]) as stream:
            for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    yield chunk.choices[0].delta.content
    return ask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--seconds", type=float, default=90, help="measured window per run")
    parser.add_argument("--ramp", type=float, default=None,
                        help="seconds over which clients start (default: 1.5 s per client)")
    parser.add_argument("--shape", choices=["rag", "short"], default="rag")
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    passages = guide_passages() if args.shape == "rag" else []
    engines = {mb: build(mb, args.threads, passages) for mb in (args.max_batch, 1)}
    one = engines[1]
    tokenizer = one.generator_for(one.variants[one.default_variant]).tokenizer
    rows = []
    with served_api(engines[args.max_batch]) as batched_url, served_api(engines[1]) as one_url:
        urls = {args.max_batch: batched_url, 1: one_url}
        for level, clients in enumerate(args.clients):
            order = sorted(urls, reverse=level % 2 == 0)
            for max_batch in order:
                ask = asker(urls[max_batch], engines[max_batch].default_variant)
                ramp = args.ramp if args.ramp is not None else 1.5 * clients
                result = closed_loop(ask, clients, args.seconds, ramp)
                rows.append((max_batch, clients, result))
                print(f"done: max_batch {max_batch}, {clients} clients", file=sys.stderr,
                      flush=True)
    for engine in engines.values():
        engine.stop_all()
    print_table(rows, args, tokenizer)


def print_table(rows: list, args, tokenizer) -> None:
    print(f"SmolLM2-135M fp32 on the CPU, streaming API, configs/default.yaml generation; "
          f"{args.shape} prompt; {args.seconds:g} s window per run; torch threads "
          f"{args.threads or 'default'}\n")
    print("| max_batch | clients | answers | failures | answers/min | vs 1 client | tokens/s | "
          "TTFT p50, s | TTFT p95, s | p95 vs 1 client |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    first = args.clients[0]
    base = {mb: r for mb, clients, r in rows if clients == first}
    for max_batch, clients, r in sorted(rows, key=lambda row: (-row[0], row[1])):
        b = base[max_batch]
        if not b.per_minute:
            raise SystemExit(f"no answer finished in the {first}-client window: raise --seconds")
        done = r.finished_in_window()
        tokens = sum(len(tokenizer.encode(a.text, add_special_tokens=False)) for a in done)
        print(f"| {max_batch} | {clients} | {len(done)} | {len(r.failures())} | "
              f"{r.per_minute:.1f} | {r.per_minute / b.per_minute:.2f} | "
              f"{tokens / r.window_s:.1f} | {r.ttft(50):.2f} | {r.ttft(95):.2f} | "
              f"{r.ttft(95) / b.ttft(95):.2f} |")
    for max_batch, clients, r in rows:
        for failure in r.failures()[:3]:
            print(f"- max_batch {max_batch}, {clients} clients: {failure}")


if __name__ == "__main__":
    main()
