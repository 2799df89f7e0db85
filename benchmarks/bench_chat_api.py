"""API overhead: streaming through the HTTP API with the openai client vs the engine directly.

    .venv/bin/python benchmarks/bench_chat_api.py [--reps 5] [--max-new-tokens 64]

Same engine, question, passages and settings both ways (greedy), alternating which goes first;
medians. Both are measured as a caller sees them: time to the first text, total time, and
tokens/s after the first text ((tokens - 1) / (total - first text)). The API path adds the
request's validation, a worker thread, the event loop, SSE framing over local HTTP and the
openai client's parsing.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from chat_bench_bot import QUESTION, embedded_engine, median, ratio, served_api  # noqa: E402


def via_engine(engine, session: str) -> dict:
    started = time.perf_counter()
    stream = engine.answer(session, QUESTION)
    first, pieces = None, []
    for piece in stream:
        first = first or time.perf_counter()
        pieces.append(piece)
    end = time.perf_counter()
    return timing(started, first or end, end, stream.reply.timings["tokens"], "".join(pieces))


def via_api(client, model: str) -> dict:
    started = time.perf_counter()
    chunks = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": QUESTION}], stream=True)
    first, pieces, tokens = None, [], 0
    for chunk in chunks:
        text = chunk.choices[0].delta.content if chunk.choices else None
        if text:
            first = first or time.perf_counter()
            pieces.append(text)
        if chunk.usage:
            tokens = chunk.usage.completion_tokens
    end = time.perf_counter()
    return timing(started, first or end, end, tokens, "".join(pieces))


def timing(started: float, first: float, end: float, tokens: int, text: str) -> dict:
    return {"first_text_s": first - started, "total_s": end - started,
            "tokens_per_s": (tokens - 1) / (end - first) if end > first else float("nan"),
            "tokens": tokens, "text": text}


def main() -> None:
    import openai

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    engine = embedded_engine(args.threads, args.max_new_tokens)
    runs: dict[str, list[dict]] = {"engine": [], "api": []}
    with served_api(engine) as base_url:
        client = openai.OpenAI(base_url=base_url, api_key="none", max_retries=0, timeout=600)
        via_api(client, engine.default_variant)  # first request: route and client warm-up
        for rep in range(args.reps):
            order = ["engine", "api"] if rep % 2 == 0 else ["api", "engine"]
            for kind in order:
                runs[kind].append(via_engine(engine, f"rep-{rep}") if kind == "engine"
                                  else via_api(client, engine.default_variant))
    report(runs, args)


def report(runs: dict[str, list[dict]], args) -> None:
    same = len({r["text"] for r in runs["engine"] + runs["api"]}) == 1
    print(f"SmolLM2-135M fp32, {runs['engine'][0]['tokens']} new tokens (max "
          f"{args.max_new_tokens}), greedy, torch threads {args.threads}, {args.reps} reps "
          f"alternating; same text both ways: {same}\n")
    print("| measure | Engine.answer | HTTP API + openai client (stream) | API / engine |")
    print("|---|---|---|---|")
    for key, label in [("first_text_s", "time to first text, s"), ("total_s", "total, s"),
                       ("tokens_per_s", "tokens/s after first text")]:
        eng = median([r[key] for r in runs["engine"]])
        api = median([r[key] for r in runs["api"]])
        print(f"| {label} (median) | {eng:.3f} | {api:.3f} | {ratio(api, eng)} |")


if __name__ == "__main__":
    main()
