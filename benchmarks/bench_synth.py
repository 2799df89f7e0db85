"""``chatbot data synth`` throughput with the embedded teacher, and what each filter keeps.

    python benchmarks/bench_synth.py                  # 12 chunks x 2 questions of docs/
    python benchmarks/bench_synth.py --n 60 --questions-per-chunk 3

Indexes the project's own docs/ (the default config, embedded SmolLM2-135M-Instruct as the
teacher and all-MiniLM-L6-v2 for search and attribution) into a temporary data dir, loads the
teacher outside the timing, runs ``synthesize`` and prints a Markdown table: questions generated
per minute, the share of parsed questions each filter rejected and the share kept. The baseline,
measured in the same run, is the teacher's own generation time (the sum of its calls, from
``teacher_calls.jsonl``): the pipeline's overhead is the ratio of the run's wall time to it.

SmolLM2-135M is a poor teacher: it repeats one question, copies the few-shot example and
invents answers; the filters reject most of what it writes. The figures measure the pipeline
(and what the filters catch), not the quality of the data a real teacher would give.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from chat_bench_bot import ROOT, embedded_config  # noqa: E402


def run(n: int, per_chunk: int, threads: int | None) -> tuple[dict, float, float]:
    """Counts by outcome (from the run's progress file, so a run that kept nothing still
    counts), the wall seconds of ``synthesize`` and the teacher's own seconds."""
    from collections import Counter

    from app.build import bot_index
    from app.commands.data_synth import synth_settings
    from chatbot.indexing import sync_paths
    from training.errors import DataError
    from training.synth.progress import CALLS, PROGRESS, work_dir
    from training.synth.run import synthesize
    from training.synth.settings import SynthRequest

    config = embedded_config(threads)
    config.index.paths = [str(ROOT / "docs")]
    sync_paths(bot_index(config))
    settings = synth_settings(config)
    settings.engine.answer("warm-up", "Hello", None).result()  # loads the teacher, the embedder
    started = time.perf_counter()
    try:
        summary = synthesize(settings, SynthRequest("bench", "prompt", n=n,
                                                    questions_per_chunk=per_chunk)).as_dict()
    except DataError as exc:  # nothing kept: the tiny teacher's usual outcome at small n
        summary = {"error": str(exc)}
    wall = time.perf_counter() - started
    work = work_dir(settings.data.datasets_root, "bench")
    lines = (work / PROGRESS).read_text(encoding="utf-8").splitlines()[1:]
    items = [item for line in lines for item in json.loads(line)["items"]]
    calls = [json.loads(line) for line in (work / CALLS).read_text(encoding="utf-8").splitlines()]
    counts = {"chunks": len(lines), "documents": len({i["source"] for i in items}),
              "parsed": sum(bool(i["question"]) for i in items),
              "kept": sum(i["reason"] is None for i in items),
              "rejected": Counter(i["reason"] for i in items if i["reason"]),
              "calls": len(calls), "summary": summary}
    return counts, wall, sum(call["seconds"] for call in calls)


def main() -> None:
    from training.synth.run import NO_QUESTION  # counted per teacher call, not per question

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=24, help="questions asked for")
    parser.add_argument("--questions-per-chunk", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    counts, wall, teacher = run(args.n, args.questions_per_chunk, args.threads)
    parsed, summary = max(1, counts["parsed"]), counts["summary"]
    print(f"docs/ of this repository: {counts['chunks']} chunks of {counts['documents']} "
          f"documents, {args.questions_per_chunk} questions asked for per chunk; teacher "
          f"SmolLM2-135M-Instruct (embedded, CPU); {counts['calls']} teacher calls\n")
    print("| measure | value |\n|---|---:|")
    print(f"| questions asked for / parsed | {counts['chunks'] * args.questions_per_chunk} / "
          f"{counts['parsed']} |")
    print(f"| questions generated per minute (each with its answer when asked) | "
          f"{counts['parsed'] / wall * 60:.2f} |")
    print(f"| kept items per minute | {counts['kept'] / wall * 60:.2f} |")
    print(f"| wall time / teacher generation time (baseline) | {wall / teacher:.3f}x "
          f"({wall:.0f} s / {teacher:.0f} s) |")
    for reason, count in counts["rejected"].most_common():
        share = (f"{count} calls" if reason == NO_QUESTION
                 else f"{count} ({count / parsed:.0%} of parsed)")
        print(f"| rejected: {reason} | {share} |")
    print(f"| **kept** | **{counts['kept']} ({counts['kept'] / parsed:.0%} of parsed)** |")
    if "error" in summary:
        print(f"\nno dataset written: {summary['error']}")
    else:
        print(f"| train / test examples (documents) | {summary['train']} "
              f"({summary['train_documents']}) / {summary['test']} "
              f"({summary['test_documents']}) |")


if __name__ == "__main__":
    main()
