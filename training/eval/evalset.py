"""Evaluation items from held-out files: single-turn questions, multi-turn conversations, and
the validation split of a dataset built by ``chatbot data build``.

A JSONL line is read by its fields:
- ``{"question", "answers" | "answer", "scenario"?, "gold_ids"? (or "gold_sources"), "not_answerable"?, "id"?}``:
  one item; ``answers`` may be strings or ``{"answer": ...}`` objects; a ``scenario`` is put
  before the question. ConditionalQA lines are read as they are: ``doc_id`` becomes the gold
  source id and ``evidences_html`` (tags stripped) the gold evidence texts.
- ``{"messages": [...]}`` (OpenAI chat format): one item per assistant turn, the earlier turns
  replayed as history and the assistant turn as the reference.

    chatbot eval --variants prompt,finetuned --data heldout.jsonl
"""

from __future__ import annotations

import hashlib
import html
import json
import re
from dataclasses import dataclass
from pathlib import Path

from chatbot.errors import InputError
from chatbot.paths import DataPaths
from chatbot.prompts import question_in
from chatbot.types import Message
from training.data.dataset import MANIFEST, DatasetManifest


@dataclass(frozen=True)
class EvalItem:
    id: str
    question: str
    references: tuple[str, ...] = ()
    history: tuple[Message, ...] = ()
    gold_ids: tuple[str, ...] = ()
    gold_texts: tuple[str, ...] = ()
    not_answerable: bool = False

    @property
    def hash(self) -> str:
        """What the answer depends on (question and history), not the references."""
        payload = json.dumps([self.question, [m.as_dict() for m in self.history]])
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def load_items(source: str, data_dir: Path, limit: int | None = None) -> list[EvalItem]:
    """Items from a JSONL file, or from ``<data_dir>/datasets/NAME`` (its validation split)."""
    path = Path(source).expanduser()
    datasets = DataPaths(data_dir).datasets
    dataset_dir = datasets / source
    if path.is_file():
        items = list(_jsonl_items(path))
    elif "/" not in source and dataset_dir.is_dir():
        items = _dataset_items(dataset_dir)
    elif path.is_dir() and (path / "dataset").is_dir():
        items = _dataset_items(path)
    else:
        raise InputError(f"evaluation data {source!r} is neither a JSONL file nor a dataset in "
                         f"{datasets}; pass a .jsonl path or a dataset name")
    if not items:
        raise InputError(f"{source} holds no evaluation items")
    return items[:limit] if limit else items


def _jsonl_items(path: Path):
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise InputError(f"{path}, line {number}: not valid JSON ({exc})") from exc
            if not isinstance(row, dict):
                raise InputError(f"{path}, line {number}: expected a JSON object")
            if "messages" in row:
                yield from conversation_items(row["messages"], str(row.get("id", number)),
                                              f"{path}, line {number}")
            elif "question" in row:
                if not str(row["question"] or "").strip():
                    raise InputError(f"{path}, line {number}: the question is empty")
                yield question_item(row, str(row.get("id", number)))
            else:
                raise InputError(f"{path}, line {number}: needs a \"question\" (with "
                                 "\"answers\") or \"messages\" field")


def question_item(row: dict, item_id: str) -> EvalItem:
    question = str(row["question"]).strip()
    if row.get("scenario"):
        question = f"{str(row['scenario']).strip()} {question}"
    answers = row.get("answers", [row["answer"]] if "answer" in row else [])
    if isinstance(answers, str):
        answers = [answers]
    references = tuple(str(a.get("answer", a.get("text", ""))) if isinstance(a, dict) else str(a)
                       for a in answers)
    gold_ids = (row.get("gold_ids") or row.get("gold_sources")
                or ([row["doc_id"]] if row.get("doc_id") else []))
    gold_texts = [_strip_tags(h) for h in row.get("evidences_html", [])]
    return EvalItem(item_id, question, tuple(r for r in references if r.strip()),
                    gold_ids=tuple(str(g) for g in gold_ids),
                    gold_texts=tuple(t for t in gold_texts if t),
                    not_answerable=bool(row.get("not_answerable", False)))


def conversation_items(messages: list, conversation_id: str, where: str) -> list[EvalItem]:
    """One item per assistant turn that follows a user turn, except those of ``weight`` 0 (a
    logged prompt's earlier answers: each is an item of its own example); system messages are
    dropped (each variant brings its own system prompt)."""
    turns = [Message(m["role"], question_in(m["content"]) if m["role"] == "user"
                     else m["content"], m.get("weight"))
             for m in messages if isinstance(m, dict) and m.get("role") in ("user", "assistant")]
    items = []
    for position, turn in enumerate(turns):
        if (turn.role == "assistant" and turn.weight != 0 and position
                and turns[position - 1].role == "user"):
            items.append(EvalItem(f"{conversation_id}:{position}", turns[position - 1].content,
                                  (turn.content,), tuple(turns[:position - 1])))
    if not items:
        raise InputError(f"{where}: the conversation has no user turn followed by an answer")
    return items


def _strip_tags(markup: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", markup)).split())


def _dataset_items(directory: Path) -> list[EvalItem]:
    from datasets import load_from_disk

    kind = DatasetManifest.load(directory).kind if (directory / MANIFEST).is_file() else "sft"
    if kind != "sft":
        raise InputError(f"dataset {directory.name!r} is a {kind} dataset; chatbot eval asks "
                         "questions from a JSONL file or a dataset built by `chatbot data build` "
                         "without --kind")
    dataset = load_from_disk(str(directory / "dataset"))
    if "validation" not in dataset:
        raise InputError(f"dataset {directory} has no validation split; rebuild it with a "
                         "validation share above 0")
    items = []
    for row in dataset["validation"]:
        items += conversation_items(row["messages"], str(row["conversation_id"]),
                                    f"{directory}, conversation {row['conversation_id']}")
    return items


__all__ = ["EvalItem", "load_items"]
