"""What the Review tab and `chatbot data build --kind preference` cost on a grown log.

    python benchmarks/bench_review_queue.py

Writes logs of 1,000 and 10,000 answers (one session of two exchanges each; a tenth thumbed
down, a tenth up, one in twenty with a low support score, one in fifty corrected) straight into
a fresh log database, then times ``ConversationLog.review_queue`` (one SQL query, the Review
tab's refresh) against the baseline of reading every conversation and filtering in Python, and
the whole preference build (patterns-only PII, dedupe, split, write).
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from chatbot.logs import ConversationLog, now  # noqa: E402
from chatbot.migrations import open_log_database  # noqa: E402
from training.data.preference_build import build_preference_dataset  # noqa: E402
from training.data.settings import DataSettings  # noqa: E402
from training.data.steps import CurateOptions  # noqa: E402

SIZES = (1_000, 10_000)
MIN_SUPPORT = 0.5
RUNS = 5


def write_log(path: Path, answers: int) -> None:
    db = open_log_database(path)
    stamp = now()
    with db:
        for n in range(answers):
            session = f"s{n // 2}"
            if n % 2 == 0:
                db.execute("INSERT INTO sessions VALUES (?, ?, 'prompt', 'web')", (session, stamp))
            question = f"Question {n}: how do I configure feature {n % 97} for team {n}?"
            prompt = [{"role": "system", "content": "Answer from the sources."},
                      {"role": "user", "content": question}]
            db.execute("INSERT INTO turns (session_id, position, role, text, status, created_at) "
                       "VALUES (?, ?, 'user', ?, 'complete', ?)",
                       (session, 2 * (n % 2), question, stamp))
            score = 0.2 if n % 20 == 0 else 0.9
            turn = db.execute(
                "INSERT INTO turns (session_id, position, role, text, variant, messages_json, "
                "status, created_at, attribution_json) VALUES (?, ?, 'assistant', ?, 'prompt', "
                "?, 'complete', ?, ?)",
                (session, 2 * (n % 2) + 1, f"Answer {n}: set option {n % 13} to {n}.",
                 json.dumps(prompt), stamp, json.dumps({"score": score, "action": "shown"}))
            ).lastrowid
            if n % 10 in (3, 7):
                db.execute("INSERT INTO feedback (turn_id, rating, created_at) VALUES (?, ?, ?)",
                           (turn, -1 if n % 10 == 3 else 1, stamp))
            if n % 50 == 3:
                db.execute("INSERT INTO corrections (turn_id, text, created_at) VALUES (?, ?, ?)",
                           (turn, f"Corrected answer {n}: use option {n % 7}.", stamp))
    db.close()


def scan_baseline(log: ConversationLog) -> int:
    """The same selection by reading every conversation (what a UI without the query does)."""
    found = 0
    for conversation in log.conversations():
        for turn in conversation.turns:
            score = (turn.attribution or {}).get("score")
            if (turn.role == "assistant" and turn.correction is None and not turn.approved
                    and (turn.rating == -1 or (score is not None and score < MIN_SUPPORT))):
                found += 1
    return found


def median_ms(function) -> float:
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        function()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    print("| answers in the log | review queue (SQL, 50 shown) | baseline: scan every "
          "conversation | speed-up | preference build | KTO rows | DPO pairs |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for size in SIZES:
        with tempfile.TemporaryDirectory() as folder:
            root = Path(folder)
            write_log(root / "logs.sqlite", size)
            log = ConversationLog(root / "logs.sqlite")
            query = median_ms(lambda: log.review_queue(MIN_SUPPORT))
            scan = median_ms(lambda: scan_baseline(log))
            log.close()
            settings = DataSettings(
                datasets_root=root / "datasets", log_path=root / "logs.sqlite", bot_name="b",
                chat_model="unused", model_base_dir=root, template="rag",
                options=CurateOptions(pii_ner_model=None))
            start = time.perf_counter()
            summary = build_preference_dataset(settings, "prefs")
            build_s = time.perf_counter() - start
        kto = sum(summary.kto.values())
        dpo = sum(summary.dpo.values())
        print(f"| {size:,} | {query:.1f} ms | {scan:.0f} ms | {scan / query:.0f}x | "
              f"{build_s:.1f} s | {kto:,} | {dpo:,} |")


if __name__ == "__main__":
    main()
