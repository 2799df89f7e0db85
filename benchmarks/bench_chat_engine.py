"""Engine overhead: ``Engine.answer`` vs raw ``model.generate`` on the same prompt tokens.

    .venv/bin/python benchmarks/bench_chat_engine.py [--reps 5] [--max-new-tokens 64]

The embedded SmolLM2 answers the same question over the same four passages both ways, greedy,
with the same ``max_new_tokens`` and repetition penalty, alternating which goes first; medians
over the repetitions. Raw generation is timed with a streamer that only records when each token
arrives, and runs in a worker thread as the engine's does (the last column runs it in the main
thread, which is slower on this machine). Both see the same tokens: the raw run encodes the exact
messages the engine sent, and the table says whether the texts came out the same.

- first token: the model's first generated token (the engine's ``timings.first_token_ms``).
- first word: when a caller can show the first complete word. The engine never shows a word
  still being generated (it could yet become PII), so this is what its users see; for raw
  generation it is the arrival of the token after the first complete word.
- decode tokens/s: (tokens - 1) / (end - first token), with the raw run's token count for both;
  for the engine, "end" is when the caller's loop ends (filters run, turn logged).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from chat_bench_bot import QUESTION, embedded_engine, median, ratio  # noqa: E402


class Stamps:
    """A transformers streamer that records the arrival time of every generated token."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.ids: list[int] = []
        self._prompt_seen = False

    def put(self, value) -> None:
        if not self._prompt_seen:  # generate() first hands over the prompt
            self._prompt_seen = True
            return
        self.times.append(time.perf_counter())
        self.ids.extend(value.reshape(-1).tolist())

    def end(self) -> None:
        pass


def first_word_index(tokenizer, ids: list[int]) -> int:
    """The first token count at which the decoded text holds a complete word."""
    for n in range(1, len(ids) + 1):
        text = tokenizer.decode(ids[:n], skip_special_tokens=True).lstrip()
        cut = max(text.rfind(" "), text.rfind("\n"))  # the engine's rule for a shown word
        if cut > 0 and text[:cut].strip():
            return n - 1
    return len(ids) - 1


def run_raw(generator, messages, settings, main_thread: bool = False) -> dict:
    import torch

    ids = torch.tensor([generator.encode(messages)])
    stamps = Stamps()

    def generate() -> None:
        with torch.inference_mode():
            generator.model.generate(
                input_ids=ids, attention_mask=torch.ones_like(ids), streamer=stamps,
                max_new_tokens=settings.max_new_tokens, do_sample=False, temperature=None,
                top_p=None, top_k=None, repetition_penalty=settings.repetition_penalty,
                pad_token_id=generator.tokenizer.pad_token_id or generator.tokenizer.eos_token_id)

    started = time.perf_counter()
    if main_thread:
        generate()
    else:  # where the engine generates too: on this machine the main thread is ~10% slower
        worker = threading.Thread(target=generate)
        worker.start()
        worker.join()
    end = time.perf_counter()
    word = stamps.times[first_word_index(generator.tokenizer, stamps.ids)]
    tokens = len(stamps.ids)
    text = generator.tokenizer.decode(stamps.ids, skip_special_tokens=True).strip()
    return {"first_token_s": stamps.times[0] - started, "first_word_s": word - started,
            "decode_s": end - stamps.times[0], "tokens": tokens, "text": text}


def run_engine(engine, session: str) -> dict:
    started = time.perf_counter()
    stream = engine.answer(session, QUESTION)
    word = None
    for _ in stream:
        word = word or time.perf_counter()
    end = time.perf_counter()
    reply = stream.reply
    first = started + reply.timings["first_token_ms"] / 1000
    return {"first_token_s": first - started, "first_word_s": (word or end) - started,
            "decode_s": end - first, "text": reply.text, "messages": reply.messages}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: on a shared 2-core machine 2 threads stall)")
    args = parser.parse_args()

    engine = embedded_engine(args.threads, args.max_new_tokens)
    variant = engine.variant(None)
    generator = engine.generator_for(variant)
    probe = run_engine(engine, "probe")
    messages, settings = probe["messages"], engine.settings
    runs: dict[str, list[dict]] = {"raw": [], "engine": [], "raw_main": []}
    for rep in range(args.reps):
        order = ["raw", "engine", "raw_main"]
        for kind in order[rep % 3:] + order[:rep % 3]:  # rotate who goes first
            if kind == "engine":
                runs[kind].append(run_engine(engine, f"rep-{rep}"))
            else:
                runs[kind].append(run_raw(generator, messages, settings, kind == "raw_main"))
    report(runs, args, generator.count_tokens(messages))


def report(runs: dict[str, list[dict]], args, prompt_tokens: int) -> None:
    tokens = runs["raw"][0]["tokens"]
    for result in (r for kind in runs.values() for r in kind):
        result["tokens_per_s"] = (tokens - 1) / result["decode_s"]
    same = len({r["text"] for kind in runs.values() for r in kind}) == 1
    print(f"SmolLM2-135M fp32, {prompt_tokens} prompt tokens, {tokens} new "
          f"tokens (max {args.max_new_tokens}), greedy, torch threads {args.threads}, "
          f"{args.reps} reps, order rotated; same text every way: {same}\n")
    print("| measure | raw model.generate (worker thread) | Engine.answer | engine / raw | "
          "raw in the main thread |")
    print("|---|---|---|---|---|")
    for key, label, unit in [("first_token_s", "time to first token", "s"),
                             ("first_word_s", "time to first shown word", "s"),
                             ("tokens_per_s", "decode tokens/s", "")]:
        raw, eng, main_thread = (median([r[key] for r in runs[kind]])
                                 for kind in ("raw", "engine", "raw_main"))
        print(f"| {label} (median) | {raw:.3f}{unit} | {eng:.3f}{unit} | {ratio(eng, raw)} | "
              f"{main_thread:.3f}{unit} |")


if __name__ == "__main__":
    main()
