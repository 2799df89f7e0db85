"""Dataset build throughput: conversations per second, stage by stage, on synthetic chats.

    .venv/bin/python benchmarks/bench_data_build.py            # 100,000 conversations
    .venv/bin/python benchmarks/bench_data_build.py --n 10000

Writes a synthetic OpenAI-format JSONL (1-4 exchanges each; ~2% with personal data, ~2% exact
and ~2% near duplicates) to a temporary folder, runs ``build_dataset`` on it with the default
config (the real SmolLM2 tokenizer), and prints a Markdown table. The baseline is the import
stage alone (read + validate), measured in the same run; the target is >= 1,000
conversations/s for the whole build, so that building data is never the slow step.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

if TYPE_CHECKING:
    from training.data.report import BuildSummary

TOPICS = ("index", "sync", "chunk", "embedder", "variant", "adapter", "template", "feedback",
          "dataset", "report", "retrieval", "hybrid", "server", "config", "arena", "vote")
WORDS = ("how", "do", "i", "the", "a", "with", "my", "for", "when", "run", "set", "open",
         "folder", "file", "model", "answer", "question", "page", "token", "prompt", "log",
         "build", "check", "faster", "slower", "again", "first", "every", "new", "old")
PII = ("write to sam.lee@example.org", "call +44 20 7946 0958", "card 4111 1111 1111 1111",
       "IBAN DE89 3704 0044 0532 0130 00", "from 203.0.113.9")


def sentence(rng: random.Random, low: int, high: int) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(low, high))]
    words.insert(rng.randrange(len(words)), rng.choice(TOPICS))
    words.append(str(rng.randint(1, 10_000)))
    return " ".join(words).capitalize() + "."


def conversation(rng: random.Random) -> list[dict]:
    messages = []
    for _ in range(rng.randint(1, 4)):
        question = sentence(rng, 6, 20)
        if rng.random() < 0.02:
            question += " Please " + rng.choice(PII) + "."
        messages += [{"role": "user", "content": question + "?"},
                     {"role": "assistant", "content": " ".join(sentence(rng, 8, 25)
                                                               for _ in range(rng.randint(1, 3)))}]
    return messages


def write_corpus(path: Path, count: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    written: list[list[dict]] = []
    with path.open("w", encoding="utf-8") as out:
        for _ in range(count):
            roll = rng.random()
            if written and roll < 0.02:
                messages = rng.choice(written)  # exact duplicate
            elif written and roll < 0.04:
                messages = [dict(m) for m in rng.choice(written)]
                messages[0]["content"] = "So, " + messages[0]["content"]  # near duplicate
            else:
                messages = conversation(rng)
            if len(written) < 5000:
                written.append(messages)
            out.write(json.dumps({"messages": messages}) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["CHATBOT_DATA_DIR"] = tmp
        from app.build import data_settings
        from chatbot.config import BotConfig
        from training.data.build import build_dataset
        from training.data.transcripts import read_transcripts

        corpus = Path(tmp) / "synthetic.jsonl"
        write_corpus(corpus, args.n)
        warm_up = warm_up_seconds(BotConfig())
        started = time.perf_counter()
        baseline = read_transcripts([corpus])
        baseline_s = time.perf_counter() - started
        cpu = time.process_time()
        summary = build_dataset(data_settings(BotConfig()), "bench", [corpus])
        cpu = time.process_time() - cpu
    print_table(args.n, baseline_s, len(baseline.conversations), summary, cpu, warm_up)


def warm_up_seconds(config) -> float:
    """Load the tokenizer and import the writers once: a fixed cost, not a per-conversation one."""
    started = time.perf_counter()
    import datasets  # noqa: F401
    import matplotlib.pyplot  # noqa: F401

    from chatbot.models import resolve_model
    from training.data.token_lengths import chat_counter

    chat_counter(resolve_model(config.models.chat), config.models.chat)
    return time.perf_counter() - started


def print_table(count: int, baseline_s: float, valid: int, summary: BuildSummary, cpu: float,
                warm_up: float) -> None:
    seconds = summary.seconds
    rows = {"read + validate (baseline)": (baseline_s, None),
            "read (in build)": (seconds["read"], None),
            "render with template": (seconds["render"], None),
            "load tokenizer and libraries (once, before)": (warm_up, None),
            **{f"curate: {s['name']}": (s["seconds"], s["cpu_seconds"]) for s in summary.steps},
            "write": (seconds["write"], None)}
    build = seconds["total"]
    print(f"\n{count:,} synthetic conversations ({valid:,} valid); "
          f"train {summary.train:,}, validation {summary.validation:,}\n")
    print("| stage | wall s | CPU s | conversations/s (wall) | x baseline time |")
    print("|---|---:|---:|---:|---:|")
    for stage, (spent, cpu_spent) in rows.items():
        rate = f"{count / spent:,.0f}" if spent and "once" not in stage else "—"
        cpu_text = "" if cpu_spent is None else f"{cpu_spent:.2f}"
        print(f"| {stage} | {spent:.2f} | {cpu_text} | {rate} | {spent / baseline_s:.2f} |")
    print(f"| **whole build** | **{build:.2f}** | **{cpu:.2f}** | "
          f"**{count / build:,.0f}** | **{build / baseline_s:.2f}** |")
    print(f"\nCPU time of the whole build (all threads): {cpu:.1f} s = "
          f"{count / cpu:,.0f} conversations per CPU-second; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores when it ended (wall time is "
          "only comparable on an idle machine).")
    verdict = "met" if count / build >= 1000 else "NOT met"
    print(f"target >= 1,000 conversations/s (wall): {verdict}")


if __name__ == "__main__":
    main()
