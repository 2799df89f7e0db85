"""A synthesis run's dataset on disk, the same layout ``chatbot data build`` writes
(``training.data.dataset``), plus the synthesis' own files:

- ``test.jsonl``: the test split as evaluation questions (``question``, ``answer``,
  ``gold_ids``: its document, ``gold_passages``: its document and the chunk's heading path),
  which both ``chatbot eval --data`` (answers, and hit@k of the document) and ``chatbot index
  eval --data`` (retrieval of the chunk's section) read;
- ``teacher_calls.jsonl``: every teacher call with its prompt, response, seconds and verdict.

Both are redacted as the examples are (``data.pii_kinds``): the folder travels with the dataset.
Written like every dataset (``dataset.write_directory``): a failed write leaves nothing behind.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

from chatbot.models import chat_template_hash, model_fingerprint, resolve_model
from chatbot.prompts import load_template
from index.jsonfile import jsonl_lines
from training.data import dataset as store
from training.data.report import write_histogram
from training.data.settings import DataSettings
from training.data.steps import CurateOptions, Curated
from training.data.transcripts import Conversation
from training.synth.progress import CALLS
from training.synth.report import SynthSummary, render_report

TEST_ITEMS = "test.jsonl"


def test_items(conversations: list[Conversation]):
    """The test split as evaluation questions, from the redacted dialogue (the reference answer
    without the citation the training target ends with)."""
    for conversation in conversations:
        question, answer = conversation.dialogue
        cited = f" [{conversation.meta['gold_position']}]"
        yield {"id": conversation.id, "question": question.content,
               "answer": answer.content.removesuffix(cited), "gold_ids": [conversation.source],
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
            store.write_jsonl(work / CALLS, redacted_calls(calls, options))
        write_histogram(work / "token_lengths.png",
                        [curated.lengths[c.id].total for c in halves.train],
                        [curated.lengths[c.id].total for c in halves.validation],
                        (options.min_tokens, options.max_tokens))
        (work / "data_report.md").write_text(render_report(summary), encoding="utf-8")
        _manifest(summary, curated, options, data, counter).save(work)

    store.write_directory(target, overwrite, fill)


def redacted_calls(path: Path, options: CurateOptions) -> Iterator[dict]:
    """The teacher's calls redacted as the examples are: patterns in every text, and the names
    NER finds in a call's question, answer and response replaced throughout that call."""
    redactor = options.redactor()
    calls = [json.loads(line) for line in jsonl_lines(path.read_text(encoding="utf-8"))
             if line.strip()]
    texts = [list(_texts(call)) for call in calls]
    said = [[call[key] for key in ("question", "answer", "response")
             if isinstance(call.get(key), str)] for call in calls]
    for call, redacted in zip(calls, redactor.scrub_groups(texts, said)):
        yield _with_texts(call, iter(text for text, _ in redacted))


def _texts(value) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict | list):
        for item in value.values() if isinstance(value, dict) else value:
            yield from _texts(item)


def _with_texts(value, texts: Iterator[str]):
    """``value`` with its strings taken, in ``_texts`` order, from ``texts``."""
    if isinstance(value, str):
        return next(texts)
    if isinstance(value, dict):
        return {key: _with_texts(item, texts) for key, item in value.items()}
    if isinstance(value, list):
        return [_with_texts(item, texts) for item in value]
    return value


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
