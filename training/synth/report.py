"""What a synthesis run generated, what each filter rejected, and the split: the summary the CLI
prints (``--json`` too), the dataset manifest's counts and ``data_report.md``."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from index.types import Chunk
from training.data.report import token_stats
from training.data.steps import Curated
from training.synth.progress import Item


@dataclass(frozen=True)
class SynthSummary:
    name: str
    path: str
    report: str
    work_dir: str
    """Progress and the teacher call log; a rerun continues from here."""
    created_at: str
    teacher: dict
    chunks: int
    """Chunks sampled (``n / questions_per_chunk``, at most all of them)."""
    documents: int
    resumed_chunks: int
    """Chunks already done by an earlier, interrupted run."""
    questions_asked_for: int
    questions: int
    """Questions parsed from the teacher's responses."""
    rejected: dict[str, int]
    """Items by the reason they were rejected (``no question parsed`` counts calls)."""
    kept: int
    train: int
    test: int
    train_documents: int
    test_documents: int
    steps: list[dict]
    """The dataset build's curation steps run on the kept items (quality, PII, length,
    dedupe, split), with their counts."""
    tokens: dict
    seconds: float
    """Generation time of this invocation (resumed chunks cost nothing)."""
    new_questions: int
    items_per_minute: float | None
    """Questions generated (each with its answer, if it got that far) per minute."""
    warnings: list[str]

    def as_dict(self) -> dict:
        return asdict(self)

    def counts(self) -> dict[str, int]:
        """The manifest's counts, under the keys ``chatbot data show|list`` read."""
        return {"train": self.train, "validation": self.test,
                "train_turns": self.train, "validation_turns": self.test,
                "records_read": self.questions, "imported": self.kept,
                "skipped": sum(self.rejected.values()), "review": 0,
                "chunks": self.chunks, "documents": self.documents,
                "train_documents": self.train_documents, "test_documents": self.test_documents}

    def lines(self) -> list[str]:
        speed = (f", {self.items_per_minute:.1f} items/min" if self.items_per_minute else "")
        lines = [f"dataset {self.name}: train {self.train}, test (validation) {self.test} "
                 f"examples from {self.train_documents} + {self.test_documents} documents",
                 f"asked about {self.chunks} chunks of {self.documents} documents "
                 f"({self.resumed_chunks} done earlier); {self.questions} questions parsed, "
                 f"{self.kept} kept ({self.seconds:.0f} s{speed})"]
        lines += [f"  rejected {n:>5}  {reason}" for reason, n in
                  sorted(self.rejected.items(), key=lambda kv: -kv[1])]
        for step in self.steps:
            why = ", ".join(f"{n} {reason}" for reason, n in step["dropped"].items())
            lines.append(f"  {step['name']:<9} {step['in']:>5} -> {step['out']:<5} {why}".rstrip())
        lines += [f"warning: {warning}" for warning in self.warnings]
        lines.append(f"report: {self.report}")
        return lines


def summarize(request, target: Path, work: Path, teacher: dict, plan: list[Chunk],
              items: dict[str, list[Item]], curated: Curated, resumed: int,
              new_questions: int, seconds: float) -> SynthSummary:
    every = [item for found in items.values() for item in found]
    halves = curated.split
    lengths = [curated.lengths[c.id] for c in halves.train + halves.validation]
    train_docs = {c.split_key for c in halves.train}
    test_docs = {c.split_key for c in halves.validation}
    return SynthSummary(
        name=request.name, path=str(target), report=str(target / "data_report.md"),
        work_dir=str(work), created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        teacher=teacher, chunks=len(plan), documents=len({c.source for c in plan}),
        resumed_chunks=resumed, questions_asked_for=len(plan) * request.questions_per_chunk,
        questions=sum(bool(i.question) for i in every),
        rejected=dict(Counter(i.reason for i in every if i.reason)),
        kept=sum(i.kept for i in every), train=len(halves.train), test=len(halves.validation),
        train_documents=len(train_docs), test_documents=len(test_docs),
        steps=[{"name": s.name, "in": s.conversations_in, "out": s.conversations_out,
                "dropped": s.dropped} for s in curated.steps],
        tokens=token_stats([x.total for x in lengths], [x.supervised for x in lengths]),
        seconds=round(seconds, 2), new_questions=new_questions,
        items_per_minute=round(new_questions / seconds * 60, 2) if new_questions else None,
        warnings=_warnings(halves, train_docs, test_docs))


def _warnings(halves, train_docs: set[str], test_docs: set[str]) -> list[str]:
    found = []
    if not halves.train or not halves.validation:
        found.append("one split is empty: a dataset for `chatbot train` needs kept items from "
                     "at least two documents; raise --n or index more documents")
    if train_docs & test_docs:  # the split keeps documents whole; this would be a bug
        found.append(f"documents on both sides: {sorted(train_docs & test_docs)[:3]}")
    return found


def render_report(summary: SynthSummary) -> str:
    parsed = max(1, summary.questions)
    lines = [f"# Synthetic dataset `{summary.name}`", "",
             f"Generated {summary.created_at} by teacher variant "
             f"`{summary.teacher['variant']}` (model `{summary.teacher['model']}`) from "
             f"{summary.chunks} chunks of {summary.documents} documents.", "",
             "| | examples | documents |", "|---|---:|---:|",
             f"| train | {summary.train} | {summary.train_documents} |",
             f"| test (validation split) | {summary.test} | {summary.test_documents} |", "",
             *[f"**Warning:** {w}." for w in summary.warnings], "",
             "## Filters", "",
             f"{summary.questions_asked_for} questions asked for, {summary.questions} parsed, "
             f"**{summary.kept} kept** ({summary.kept / parsed:.0%} of those parsed).", "",
             "| rejected because | items | share of parsed |", "|---|---:|---:|",
             *[f"| {reason} | {n} | {n / parsed:.0%} |" for reason, n in
               sorted(summary.rejected.items(), key=lambda kv: -kv[1])], "",
             "Every teacher call, with its prompt, response, seconds and verdict, is in "
             "`teacher_calls.jsonl`.", "",
             "## Curation steps on the kept items", "",
             "| step | in | out | dropped |", "|---|---:|---:|---|",
             *[f"| {s['name']} | {s['in']} | {s['out']} | "
               f"{', '.join(f'{n} {r}' for r, n in s['dropped'].items()) or '-'} |"
               for s in summary.steps], ""]
    if summary.tokens["examples"]:
        tokens = summary.tokens
        lines += ["## Token lengths", "",
                  f"Median {tokens['median']}, p95 {tokens['p95']}, max {tokens['max']} tokens "
                  f"per example; supervised share {tokens['supervised_share']:.1%}.", "",
                  "![token lengths](token_lengths.png)", ""]
    return "\n".join(lines)
