"""Follow-up questions: which retrieval query finds what a follow-up refers to.

Two-turn conversations, searched with the bot's retrieval settings (configs/default.yaml:
MiniLM, hybrid, min_score 0.25):

- ``docs``: ``benchmarks/data/followup_docs.jsonl`` over this project's user guide (docs/):
  follow-ups that refer back ("What happens if I run it again after editing one file?") and
  topic switches (a new, standalone question); hit = a chunk of the expected file under the
  expected heading;
- ``conditionalqa``: the dev questions with evidence, read from ../shared/data at run time,
  over their 12 gov.uk pages plus the 12 distractor pages. Follow-up: the user tells the
  scenario, then asks the question; switch: a full question about another page, then a full
  question. Hit = a chunk holding a gold evidence element.

Each conversation's last message is searched as ``off`` (the message alone), ``last_turns``
(the message, then the user turn before it) and ``rewrite`` (the embedded SmolLM2, through the engine's
generator, rewrites it as a standalone question from a few-shot prompt).

    python benchmarks/bench_followup.py [--limit 10] [--no-rewrite]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_index_quality import found_ids, norm, rows, write_pages  # noqa: E402
from chat_bench_bot import ROOT, embedded_config  # noqa: E402

from chatbot.retrieval_query import QueryPolicy, retrieval_query, rewrite_with  # noqa: E402
from chatbot.types import Message  # noqa: E402
from index.types import Hit  # noqa: E402

MODES = ("off", "last_turns", "rewrite")
KS = (1, 4, 10)
ACK = "I see. What would you like to know?"


@dataclass(frozen=True)
class Conversation:
    corpus: str
    kind: str
    """``follow_up`` (refers back) or ``switch`` (a new, standalone question)."""
    history: list[Message]
    question: str
    gold: Callable[[Hit], bool]


def docs_conversations() -> list[Conversation]:
    def gold(expect: list[dict]) -> Callable[[Hit], bool]:
        return lambda hit: any(hit.source.endswith("/" + e["source"])
                               and e["section"].lower() in hit.location.lower() for e in expect)

    lines = (ROOT / "benchmarks/data/followup_docs.jsonl").read_text().splitlines()
    return [Conversation("docs", row["kind"], [Message(**m) for m in row["history"]],
                         row["question"], gold(row["expect"]))
            for row in map(json.loads, lines)]


def conditionalqa_conversations() -> list[Conversation]:
    texts = {p["passage_id"]: norm(p["text"]) for p in rows("passages.jsonl")}
    questions = [q for q in rows("questions.jsonl") if q["evidence_passage_ids"]]

    def gold(q: dict) -> Callable[[Hit], bool]:
        wanted = {pid for ids in q["evidence_passage_ids"] for pid in ids}
        return lambda hit: bool(found_ids(hit, "pages", [], texts) & wanted)

    found = []
    for i, q in enumerate(questions):
        found.append(Conversation("conditionalqa", "follow_up",
                                  [Message("user", q["scenario"]), Message("assistant", ACK)],
                                  q["question"], gold(q)))
        other = next(o for o in questions[i + 1:] + questions if o["doc_id"] != q["doc_id"])
        earlier = other["scenario"] + " " + other["question"]
        found.append(Conversation("conditionalqa", "switch",
                                  [Message("user", earlier), Message("assistant", ACK)],
                                  q["scenario"] + " " + q["question"], gold(q)))
    return found


def open_search(config, data_dir: Path, paths: list[Path]):
    """The bot's retriever over ``paths``, indexed into ``data_dir``."""
    from app.build import bot_index
    from chatbot.indexing import open_retriever, sync_paths

    os.environ["CHATBOT_DATA_DIR"] = str(data_dir)
    index = bot_index(config)
    sync_paths(index, paths)
    return open_retriever(index)


def first_gold_rank(hits: list[Hit], gold: Callable[[Hit], bool]) -> int | None:
    return next((rank for rank, hit in enumerate(hits, start=1) if gold(hit)), None)


def row(corpus: str, kind: str, mode: str, ranks: list[int | None]) -> str:
    n = len(ranks)
    hits = [sum(1 for r in ranks if r and r <= k) / n for k in KS]
    mrr = sum(1 / r for r in ranks if r) / n
    return (f"| {corpus} | {kind} | {n} | {mode} | "
            + " | ".join(f"{h:.3f}" for h in hits) + f" | {mrr:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="conversations per set and kind")
    parser.add_argument("--no-rewrite", action="store_true", help="skip the chat-model rewrite")
    args = parser.parse_args()
    from app.build import build_engine

    tmp = Path(tempfile.mkdtemp(prefix="bench-followup-"))
    config = embedded_config(None, tmp / "bot")
    write_pages(tmp / "pages")
    searches = {"docs": open_search(config, tmp / "docs-bot", [ROOT / "docs"]),
                "conditionalqa": open_search(config, tmp / "cqa-bot", [tmp / "pages"])}
    conversations = docs_conversations() + conditionalqa_conversations()
    modes = MODES[:2] if args.no_rewrite else MODES
    engine = build_engine(config, search=lambda query, k: [], log=False)
    rewrite_ms: list[float] = []

    def rewrite(messages: list[Message]) -> str:
        generator = engine.generator_for(engine.variant(None))  # loaded once, not timed
        started = time.perf_counter()
        text = rewrite_with(generator)(messages)
        rewrite_ms.append((time.perf_counter() - started) * 1000)
        return text

    groups: dict[tuple[str, str], list[Conversation]] = {}
    for c in conversations:
        groups.setdefault((c.corpus, c.kind), []).append(c)
    ranks: dict[tuple[str, str, str], list[int | None]] = {}
    examples: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for (corpus, kind), group in groups.items():
        for c in group[:args.limit]:
            for mode in modes:
                query = retrieval_query(QueryPolicy(mode, 2), c.question, c.history, rewrite)
                hits = searches[corpus].search(query, k=max(KS))
                ranks.setdefault((corpus, kind, mode), []).append(first_gold_rank(hits, c.gold))
                if mode == "rewrite":
                    examples.setdefault((corpus, kind), []).append((c.question, query))
    print(f"\nretrieval: {config.retrieval.mode}, min_score {config.retrieval.min_score}; "
          f"last_turns and rewrite read 2 user turns\n")
    print("| corpus | kind | n | query | hit@1 | hit@4 | hit@10 | MRR |\n"
          "|---|---|---|---|---|---|---|---|")
    for (corpus, kind, mode), found in ranks.items():
        print(row(corpus, kind, mode, found))
    for kind in ("follow_up", "switch"):
        for mode in modes:
            found = [r for (c, k, m), rs in ranks.items() if k == kind and m == mode for r in rs]
            print(row("all", kind, mode, found))
    if rewrite_ms:
        print(f"\nrewrite: median {statistics.median(rewrite_ms):.0f} ms, max "
              f"{max(rewrite_ms):.0f} ms per rewrite ({len(rewrite_ms)} rewrites)")
        print("\nsome rewrites (corpus, kind, last message -> query):")
        for (corpus, kind), pairs in examples.items():
            for question, query in pairs[:3]:
                print(f"- {corpus}/{kind}: {question[:90]!r} -> {query[:120]!r}")


if __name__ == "__main__":
    main()
