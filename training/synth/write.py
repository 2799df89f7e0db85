"""A synthesis run's dataset on disk, the same layout ``chatbot data build`` writes
(``training.data.dataset``), plus the synthesis' own files:

- ``test.jsonl``: the test split as evaluation questions (``question``, ``answer``,
  ``gold_ids``: its document, ``gold_passages``: its document and the chunk's heading path),
  which both ``chatbot eval --data`` (answers, and hit@k of the document) and ``chatbot index
  eval --data`` (retrieval of the chunk's section) read;
- ``teacher_calls.jsonl``: every teacher call with its prompt, response, seconds and verdict.

Written like every dataset (``dataset.write_directory``): a failed write leaves nothing behind.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict
from pathlib import Path

from chatbot.models import chat_template_hash, model_fingerprint, resolve_model
from chatbot.prompts import load_template
from training.data import dataset as store
from training.data.report import write_histogram
from training.data.settings import DataSettings
from training.data.steps import CurateOptions, Curated
from training.data.transcripts import Conversation
from training.synth.progress import CALLS
from training.synth.report import SynthSummary, render_report

TEST_ITEMS = "test.jsonl"


def test_items(conversations: list[Conversation]):
    for conversation in conversations:
        yield {"id": conversation.id, "question": conversation.dialogue[0].content,
               "answer": conversation.meta["answer"], "gold_ids": [conversation.source],
               "gold_passages": [_passage(conversation.source, conversation.meta["location"])]}


def _passage(source: str, location: str) -> str:
    """``chatbot index eval``'s name of a chunk: its file, and ``#`` its heading path."""
    return f"{source}#{location}" if location else source


def write_dataset(target: Path, summary: SynthSummary, curated: Curated, options: CurateOptions,
                  data: DataSettings, counter, calls: Path, overwrite: bool) -> None:
    def fill(work: Path) -> None:
        halves = curated.split
        store.save_examples(work, halves.train, halves.validation)
        store.write_jsonl(work / "export.jsonl",
                          store.export_records(halves.train + halves.validation))
        store.write_jsonl(work / TEST_ITEMS, test_items(halves.validation))
        if calls.is_file():
            shutil.copyfile(calls, work / CALLS)
        write_histogram(work / "token_lengths.png",
                        [curated.lengths[c.id].total for c in halves.train],
                        [curated.lengths[c.id].total for c in halves.validation],
                        (options.min_tokens, options.max_tokens))
        (work / "data_report.md").write_text(render_report(summary), encoding="utf-8")
        _manifest(summary, curated, options, data, counter).save(work)

    store.write_directory(target, overwrite, fill)


def _manifest(summary: SynthSummary, curated: Curated, options: CurateOptions,
              data: DataSettings, counter) -> store.DatasetManifest:
    template = load_template(data.template)
    tokenizer = getattr(counter, "tokenizer", None)
    halves = curated.split
    return store.DatasetManifest(
        name=summary.name, created_at=summary.created_at,
        sources=[{"synthetic": True, "teacher": summary.teacher, "chunks": summary.chunks,
                  "documents": summary.documents}],
        options={**asdict(options), "synth": {"questions_asked_for": summary.questions_asked_for,
                                              "work_dir": summary.work_dir}},
        steps=summary.steps, counts=summary.counts(), pii=curated.pii_counts,
        pii_detector=curated.pii_detector, tokens=summary.tokens, chat_model=data.chat_model,
        chat_model_fingerprint=model_fingerprint(resolve_model(data.chat_model,
                                                               data.model_base_dir)),
        chat_template_hash=chat_template_hash(tokenizer) if tokenizer else None,
        template=template.name, template_hash=template.hash, render_with_template=True,
        sha256=store.examples_sha256(halves.train, halves.validation))
