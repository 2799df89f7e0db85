"""Remote overhead: our engine generating on a server vs. the openai client straight to it.

    .venv/bin/python benchmarks/bench_remote_overhead.py [--reps 5] [--max-tokens 48]

The remote is a `chatbot serve` subprocess on the embedded SmolLM2 (configs/default.yaml, its
own data dir). Our bot's variant generates there (`backends:`), answering over the fixed guide
passages of chat_bench_bot.py (a list lookup, so retrieval takes no time); the direct path sends
the exact messages our engine rendered (``reply.messages``) with the same settings (greedy, same
max_tokens), alternating which goes first. Medians, and the median of each repetition's
engine / direct ratio, which a burst of load from other work on a shared machine moves less.
The engine's first token is timed as its reader sees the first piece (held until a word is
complete, so filters see whole words) and as ``reply.timings`` records the first piece from the
server; the direct client's as its first content chunk. Both share the machine with the server,
so anything the engine spends on CPU shows.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from chat_bench_bot import QUESTION, ROOT, guide_passages, median, ratio  # noqa: E402
from tests.serving import chatbot_serve  # noqa: E402

MODEL = "prompt"
"""The remote's default variant, named as the model."""


def remote_bot(base_url: str, folder: Path, max_tokens: int):
    """Our bot: configs/default.yaml's defaults, its variant generating on ``base_url``."""
    from app.build import build_engine
    from chatbot.config_file import load_config

    path = folder / "bot.yaml"
    path.write_text(yaml.safe_dump({
        "backends": {"remote": {"kind": "openai", "base_url": base_url}},
        "variants": {"prompt": {"backend": "remote", "model": MODEL, "retrieval": True}},
        "default_variant": "prompt"}))
    os.environ["CHATBOT_DATA_DIR"] = str(folder / "bot-data")
    passages = guide_passages()
    engine = build_engine(load_config(path), search=lambda query, k: passages[:k])
    engine.settings = replace(engine.settings, max_new_tokens=max_tokens)
    return engine


def via_engine(engine, session: str) -> dict:
    started = time.perf_counter()
    stream = engine.answer(session, QUESTION)
    first = None
    for _ in stream:
        first = first or time.perf_counter()
    end = time.perf_counter()
    reply = stream.reply
    return {"first_s": (first or end) - started, "total_s": end - started,
            "first_recorded_s": (reply.timings["first_token_ms"] or 0) / 1000,
            "total_recorded_s": reply.timings["total_ms"] / 1000, "text": reply.text}


def via_client(client, messages: list[dict], settings) -> dict:
    started = time.perf_counter()
    chunks = client.chat.completions.create(
        model=MODEL, messages=messages, stream=True, max_tokens=settings.max_new_tokens,
        temperature=settings.temperature, top_p=settings.top_p)
    first, pieces = None, []
    for chunk in chunks:
        text = chunk.choices[0].delta.content if chunk.choices else None
        if text:
            first = first or time.perf_counter()
            pieces.append(text)
    end = time.perf_counter()
    return {"first_s": (first or end) - started, "total_s": end - started,
            "text": "".join(pieces).strip()}


def main() -> None:
    import openai

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=48)
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="bench-remote-"))
    with chatbot_serve(ROOT / "configs" / "default.yaml", data_dir=folder / "remote-data") as (
            url, _):
        engine = remote_bot(f"{url}/v1", folder, args.max_tokens)
        warm = engine.answer("warm-up", QUESTION).result()  # the server loads its model
        messages = [m.as_dict() for m in warm.messages]
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0,
                               timeout=600)
        via_client(client, messages, engine.settings)
        runs: dict[str, list[dict]] = {"engine": [], "direct": []}
        for rep in range(args.reps):
            for kind in (["engine", "direct"] if rep % 2 == 0 else ["direct", "engine"]):
                runs[kind].append(via_engine(engine, f"rep-{rep}") if kind == "engine"
                                  else via_client(client, messages, engine.settings))
    report(runs, args, len(messages))


def report(runs: dict[str, list[dict]], args, message_count: int) -> None:
    texts = {r["text"] for r in runs["engine"] + runs["direct"]}
    print(f"`chatbot serve` on SmolLM2-135M (configs/default.yaml) as the remote, "
          f"{message_count} messages rendered by the rag template over 4 fixed passages, "
          f"max_tokens {args.max_tokens}, greedy, {args.reps} reps alternating; "
          f"same text both ways: {len(texts) == 1}\n")
    print("| measure | engine (remote variant) | openai client direct | engine / direct "
          "| median of paired ratios |")
    print("|---|---|---|---|---|")
    rows = [("first token, s: first piece shown", "first_s", "first_s"),
            ("first token, s: reply.timings first_token_ms", "first_recorded_s", "first_s"),
            ("total, s: stream read to the end", "total_s", "total_s"),
            ("total, s: reply.timings total_ms", "total_recorded_s", "total_s")]
    for label, engine_key, direct_key in rows:
        eng = median([r[engine_key] for r in runs["engine"]])
        direct = median([r[direct_key] for r in runs["direct"]])
        paired = median([e[engine_key] / d[direct_key]
                         for e, d in zip(runs["engine"], runs["direct"])])
        print(f"| {label} (median) | {eng:.3f} | {direct:.3f} | {ratio(eng, direct)} "
              f"| {paired:.3f} |")


if __name__ == "__main__":
    main()
