"""Where an answer's time goes: retrieval, prompt rendering, prefill, decode (embedded default).

    .venv/bin/python benchmarks/bench_chat_latency.py [--max-new-tokens 64]

Indexes the user guide (docs/) into a temporary data dir with the default config (MiniLM,
hybrid retrieval), then asks five questions about it through ``Engine.answer`` and splits each
answer's time with the engine's own timings. As a reference, the same prompt's prefill alone (one
forward pass of the prompt through the model) is timed right after each answer.

- retrieval: embedding the question, dense + BM25 search, fusion.
- prompt: template rendering and fitting the history to the token budget.
- to first token, after the prompt: the turn's log write, encoding, prefill, first decode step.
- decode: from the first token to the end of the answer (filters and the final log write included).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from chat_bench_bot import embedded_config, median  # noqa: E402

QUESTIONS = [
    "How do I index my documents?",
    "How do I fine-tune the model on our conversations?",
    "What does an A/B test compare, and how do I read its result?",
    "How do I give feedback on an answer?",
    "Why is the first answer slow, and what can I do about it?",
]


def build(threads: int | None, max_new_tokens: int):
    from dataclasses import replace

    from app.build import bot_index, build_engine
    from chatbot.indexing import open_retriever, sync_paths

    config = embedded_config(threads)
    report = sync_paths(bot_index(config))
    retriever = open_retriever(bot_index(config))
    engine = build_engine(config, search=lambda query, k: retriever.search(query, k=k))
    engine.settings = replace(engine.settings, max_new_tokens=max_new_tokens)
    engine.answer("warm-up", "Hello").result()  # loads the chat model and the embedder
    return engine, report


def prefill_seconds(generator, messages) -> float:
    """One forward pass of the prompt (logits of the last position only, as generate()
    computes them), in a worker thread as the engine generates."""
    import torch

    ids = torch.tensor([generator.encode(messages)])
    seconds = []

    def forward() -> None:
        with torch.inference_mode():
            started = time.perf_counter()
            generator.model(input_ids=ids, logits_to_keep=1)  # as generate() prefills
            seconds.append(time.perf_counter() - started)

    worker = threading.Thread(target=forward)
    worker.start()
    worker.join()
    return seconds[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    engine, sync_report = build(args.threads, args.max_new_tokens)
    generator = engine.generator_for(engine.variant(None))
    rows = []
    for i, question in enumerate(QUESTIONS):
        reply = engine.answer(f"q{i}", question).result()
        t = reply.timings
        after_prompt = t["first_token_ms"] - t["retrieval_ms"] - t["prompt_ms"]
        decode = t["total_ms"] - t["first_token_ms"]
        rows.append({"retrieval": t["retrieval_ms"], "prompt": t["prompt_ms"],
                     "first": after_prompt, "prefill": prefill_seconds(generator,
                                                                       reply.messages) * 1000,
                     "decode": decode, "total": t["total_ms"], "tokens": t["tokens"],
                     "prompt_tokens": generator.count_tokens(reply.messages),
                     "hits": len(reply.hits)})
    print(f"docs/ indexed: {sync_report.summary()}; SmolLM2-135M fp32, max "
          f"{args.max_new_tokens} new tokens, greedy, torch threads {args.threads}; "
          f"{len(QUESTIONS)} questions, medians\n")
    print(f"prompt tokens (median) {median([r['prompt_tokens'] for r in rows]):.0f}, "
          f"new tokens (median) {median([r['tokens'] for r in rows]):.0f}, "
          f"passages used (median) {median([r['hits'] for r in rows]):.0f}\n")
    total = median([r["total"] for r in rows])
    print("| stage | median ms | share of the median total |")
    print("|---|---|---|")
    for key, label in [("retrieval", "retrieval"), ("prompt", "prompt rendering"),
                       ("first", "log write + prefill + first token"),
                       ("prefill", "(reference: prefill alone, one forward pass)"),
                       ("decode", "decode"), ("total", "total")]:
        value = median([r[key] for r in rows])
        print(f"| {label} | {value:.1f} | {value / total:.1%} |")
    rate = median([r["tokens"] / (r["decode"] / 1000) for r in rows if r["decode"] > 0])
    print(f"\ndecode rate (median): {rate:.1f} tokens/s")


if __name__ == "__main__":
    main()
