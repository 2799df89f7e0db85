"""Offline eval on ConditionalQA (gov.uk questions): base model without retrieval vs. with RAG
over the questions' documents [vs. a fine-tuned adapter with RAG], through ``chatbot eval``.

    .venv/bin/python benchmarks/bench_eval_conditionalqa.py --limit 50 --max-new-tokens 64 \
        [--adapter DIR] [--work /tmp/cqa-eval]

The documents are converted to Markdown under ``--work`` at run time (never into the repo),
indexed into that separate data dir, and the questions read as they are (``chatbot eval``
converts ConditionalQA fields at load time). Prints the metric table with 95% intervals,
the differences against the no-retrieval baseline, and the answers per minute.
"""

from __future__ import annotations

import argparse
import html
import json
import re
import sys
import time
from pathlib import Path

import yaml
from shared_data import SHARED

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

DATA = SHARED / "conditionalqa"
HEADINGS = {"h1": "# ", "h2": "## ", "h3": "### ", "li": "- "}


def element_to_markdown(element: str) -> str:
    tag = re.match(r"\s*<(\w+)", element)
    text = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", element)).split())
    return HEADINGS.get(tag.group(1) if tag else "", "") + text


def write_documents(work: Path) -> Path:
    docs = work / "docs"
    docs.mkdir(parents=True, exist_ok=True)
    for line in (DATA / "documents.jsonl").read_text().splitlines():
        document = json.loads(line)
        body = "\n\n".join(element_to_markdown(e) for e in document["elements"])
        (docs / f"{document['doc_id']}.md").write_text(body + "\n", encoding="utf-8")
    return docs


def write_config(work: Path, docs: Path, adapter: Path | None, k: int) -> Path:
    variants = {"base": {"template": "plain", "retrieval": False},
                "rag": {"template": "rag", "retrieval": True}}
    if adapter:
        variants["finetuned"] = {"template": "rag", "retrieval": True, "adapter": str(adapter)}
    config = {"name": "gov.uk helper", "data_dir": str(work / "data"),
              "index": {"paths": [str(docs)]},
              "retrieval": {"k": k, "min_score": None},
              "variants": variants, "default_variant": "rag"}
    path = work / "bot.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=50)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--adapter", type=Path)
    parser.add_argument("--work", type=Path, default=Path("/tmp/cqa-eval"))
    args = parser.parse_args()

    from app.build import bot_index, eval_settings
    from chatbot.config_file import load_config
    from chatbot.indexing import sync_paths
    from training.eval.report import comparison_rows, summary_rows
    from training.eval.evaluate import run_eval

    config = load_config(write_config(args.work, write_documents(args.work), args.adapter,
                                      args.k))
    started = time.perf_counter()
    report = sync_paths(bot_index(config))
    print(f"indexed in {time.perf_counter() - started:.0f} s: {report}")
    variants = ["base", "rag"] + (["finetuned"] if args.adapter else [])
    started = time.perf_counter()
    result = run_eval(eval_settings(config), variants, str(DATA / "questions.jsonl"), name="conditionalqa",
                      limit=args.limit, max_new_tokens=args.max_new_tokens,
                      progress=lambda v, d, t: print(f"{v} {d}/{t}", flush=True))
    wall = time.perf_counter() - started
    run = result.run
    print(f"\n{len(result.items)} items x {len(variants)} variants: {run.generated} answers "
          f"generated, {run.reused} reused; generation {run.seconds:.0f} s, total {wall:.0f} s; "
          f"{run.generated / (run.seconds / 60):.1f} answers/min, "
          f"{len(result.items) / (run.seconds / 60 / len(variants)):.1f} items/min per variant"
          if run.generated else "all answers reused from the cache")
    print("\n| metric | " + " | ".join(variants) + " |\n|---|" + "---|" * len(variants))
    for row in summary_rows(result):
        print("| " + " | ".join(row) + " |")
    for candidate in result.candidates:
        print(f"\n{candidate} - {result.baseline}\n\n| metric | difference [95% CI] | Wilcoxon p "
              "| permutation p | W/T/L | n | MDE | note |\n|---|---|---|---|---|---|---|---|")
        for row in comparison_rows(result, candidate):
            print("| " + " | ".join(row) + " |")
    print(f"\nreports in {result.out_dir}")


if __name__ == "__main__":
    main()
