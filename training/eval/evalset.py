"""Evaluation items from held-out files: single-turn questions, multi-turn conversations, and
the validation split of a dataset built by ``chatbot data build``.

A JSONL line is read by its fields:
- ``{"question", "answers" | "answer", "scenario"?, "gold_ids"? (or "gold_sources"), "not_answerable"?, "id"?}``:
  one item; ``answers`` may be strings or ``{"answer": ...}`` objects; a ``scenario`` is put
  before the question. ConditionalQA lines are read as they are: ``doc_id`` becomes the gold
  source id and ``evidences_html`` (tags stripped) the gold evidence texts.
- ``{"messages": [...]}`` (OpenAI chat format): one item per assistant turn, the earlier turns
  replayed as history and the assistant turn as the reference.

A question line's field that is not read is warned about (a typo?), not refused.

    chatbot eval --variants prompt,finetuned --data heldout.jsonl
"""

from __future__ import annotations

import hashlib
import html
import json
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from chatbot.errors import InputError
from chatbot.paths import DataPaths
from chatbot.prompts import question_in
from chatbot.types import Message
from index.evaluate import FIELDS as INDEX_EVAL_FIELDS
from index.jsonfile import UnreadFields
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


TEXT = (str, int, float)
"""Where a question row gives text, a number is read as its digits."""


QUESTION_FIELDS = ("question", "answers", "answer", "scenario", "gold_ids", "gold_sources",
                   "doc_id", "evidences_html", "not_answerable", "id")
"""The fields a question line is read by (``doc_id`` and ``evidences_html``: ConditionalQA's)."""
CONDITIONALQA_UNREAD = ("url", "title", "evidence_passage_ids")
"""ConditionalQA's fields that no metric needs: its files are read as they are, unwarned."""
EXPECTED_UNREAD = (*CONDITIONALQA_UNREAD, *INDEX_EVAL_FIELDS)
"""Fields a question line may have unread, unwarned: ``chatbot index eval``'s (one file serves
both commands, as ``chatbot data synth``'s test sets do) and ConditionalQA's."""


def load_items(source: str, data_dir: Path, limit: int | None = None,
               warn: Callable[[str], None] | None = None) -> list[EvalItem]:
    """Items from a JSONL file, or from ``<data_dir>/datasets/NAME`` (its validation split).
    ``warn`` is given each warning about the file: a question line's field that is not read."""
    path = Path(source).expanduser()
    datasets = DataPaths(data_dir).datasets
    dataset_dir = datasets / source
    if path.is_file():
        unread = UnreadFields(QUESTION_FIELDS, EXPECTED_UNREAD)
        items = list(_jsonl_items(path, unread))
        _check_unique_ids(items, source)
        for warning in unread.warnings(path) if warn else ():
            warn(warning)
    elif "/" not in source and dataset_dir.is_dir():
        items = _dataset_items(dataset_dir)
    elif path.is_dir() and (path / "dataset").is_dir():
        items = _dataset_items(path)
    else:
        raise InputError(f"evaluation data {source!r} is neither a JSONL file nor a dataset in "
                         f"{datasets}; pass a .jsonl path or a dataset name")
    if not items and path.is_file():
        raise InputError(f"{source} holds no evaluation items; give it one JSON object a line, "
                         'such as {"question": "...", "answers": ["..."]}')
    if not items:
        raise InputError(f"dataset {Path(source).name!r} has no validation conversations to "
                         "ask; build it again with more conversations or a larger "
                         "data.validation_share, or evaluate on a JSONL file of held-out "
                         "questions instead")
    return items[:limit] if limit else items


def _check_unique_ids(items: list[EvalItem], source: str) -> None:
    """Each id of a file names one row of the per-item scores and of the reports' regressions
    (a dataset's ids are the conversations' own, made by ``chatbot data build``)."""
    counts = Counter(item.id for item in items)
    repeated = [f"{item_id!r} is given to {n} items" for item_id, n in counts.items() if n > 1]
    if repeated:
        shown = ", ".join(repeated[:3]) + (f" (and {len(repeated) - 3} more ids)"
                                           if len(repeated) > 3 else "")
        raise InputError(f"{source}: item id {shown}; give each its own \"id\"")


def repeated_questions(items: list[EvalItem]) -> list[str]:
    """A warning (or none) when items ask the same question after the same history: each
    counts as a sample of its own, so that question weighs twice in the means and the paired
    tests."""
    first: dict[str, EvalItem] = {}
    repeats = []
    for item in items:
        if item.hash in first:
            repeats.append((item, first[item.hash]))
        else:
            first[item.hash] = item
    if not repeats:
        return []
    item, earlier = repeats[0]
    more = f" (and {len(repeats) - 1} more repeats)" if len(repeats) > 1 else ""
    return [f"item {item.id} asks what item {earlier.id} asks (the same question after the "
            f"same history){more}, so that question counts twice in every mean and "
            "comparison; give one item all its reference answers, or remove the repeats"]


def _jsonl_items(path: Path, unread: UnreadFields):
    for number, raw in enumerate(path.read_bytes().splitlines(), start=1):
        where = f"{path}, line {number}"
        try:  # the byte-order mark an editor may put first is no part of the text
            line = raw.decode("utf-8").removeprefix("\ufeff")
        except UnicodeDecodeError as exc:
            raise InputError(f"{where}: not UTF-8 text (byte 0x{raw[exc.start]:02x}); re-save "
                             "the file as UTF-8") from None
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise InputError(f"{where}: not valid JSON ({exc})") from exc
        except RecursionError:  # Python's parser gives up at about 1,000 levels
            raise InputError(f"{where}: JSON nested too deeply to read") from None
        if not isinstance(row, dict):
            raise InputError(f"{where}: expected a JSON object")
        item_id = row.get("id")
        if item_id is not None and (isinstance(item_id, bool) or not isinstance(item_id, TEXT)):
            raise InputError(f"{where}: \"id\" must be a string or a number")
        item_id = str(number if item_id is None else item_id)  # null: no id given
        if "messages" in row:
            yield from conversation_items(row["messages"], item_id, where)
        elif "question" in row:
            if problem := _wrong_field(row):
                raise InputError(f"{where}: {problem}")
            if not (row["question"] or "").strip():
                raise InputError(f"{where}: the question is empty")
            unread.note(row, number)
            yield question_item(row, item_id)
        else:
            raise InputError(f"{where}: needs a \"question\" (with \"answers\") or "
                             "\"messages\" field")


def _wrong_field(row: dict) -> str | None:
    """Why a question row can't be read as it was meant: a list or an object where text
    belongs would otherwise be scored as its Python spelling, and "false" would be true."""
    answers = row.get("answers", row.get("answer", []))
    evidences = row.get("evidences_html") or []
    wrong = [(not isinstance(row["question"], (str, type(None))),
              "\"question\" must be a string"),
             (not isinstance(row.get("scenario"), (str, type(None))),
              "\"scenario\" must be a string"),
             (answers is None or not all(map(_answer_text, _listed(answers))),
              "\"answers\" must be a string or a list of strings (or of {\"answer\": ...})"),
             *((not _texts(row.get(key) or []), f"\"{key}\" must be a list of document names")
               for key in ("gold_ids", "gold_sources")),
             (not isinstance(evidences, list) or not _texts(evidences),
              "\"evidences_html\" must be a list of strings"),
             (not isinstance(row.get("not_answerable"), (bool, type(None))),
              "\"not_answerable\" must be true or false")]
    return next((why for bad, why in wrong if bad), None)


def _listed(value) -> list:
    """``value`` as a list: one item may be given without one."""
    return value if isinstance(value, list) else [value]


def _texts(value) -> bool:
    """A text or a number (read as its digits), or a list of them."""
    return all(isinstance(v, TEXT) for v in _listed(value))


def _answer_text(answer) -> bool:
    """A text or a number, or ConditionalQA's ``{"answer": text}``."""
    if isinstance(answer, dict):
        answer = answer.get("answer", answer.get("text", ""))
    return isinstance(answer, TEXT)


def question_item(row: dict, item_id: str) -> EvalItem:
    question = str(row["question"]).strip()
    if row.get("scenario"):
        question = f"{str(row['scenario']).strip()} {question}"
    answers = _listed(row.get("answers", [row["answer"]] if "answer" in row else []))
    references = tuple(str(a.get("answer", a.get("text", ""))) if isinstance(a, dict) else str(a)
                       for a in answers)
    gold_ids = (row.get("gold_ids") or row.get("gold_sources")
                or ([row["doc_id"]] if row.get("doc_id") else []))
    if isinstance(gold_ids, str):  # one document named without a list
        gold_ids = [gold_ids]
    gold_texts = [_strip_tags(h) for h in row.get("evidences_html", [])]
    return EvalItem(item_id, question, tuple(r for r in references if r.strip()),
                    gold_ids=tuple(str(g) for g in gold_ids),
                    gold_texts=tuple(t for t in gold_texts if t),
                    not_answerable=bool(row.get("not_answerable", False)))


def conversation_items(messages: list, conversation_id: str, where: str) -> list[EvalItem]:
    """One item per assistant turn that follows a user turn, except those of ``weight`` 0 (a
    logged prompt's earlier answers: each is an item of its own example); system messages are
    dropped (each variant brings its own system prompt)."""
    if not isinstance(messages, list):
        raise InputError(f"{where}: \"messages\" must be a list")
    turns = []
    for index, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("user", "assistant"):
            continue
        if not isinstance(m.get("content"), str):
            raise InputError(f"{where}: messages[{index}]: \"content\" must be a string")
        turns.append(Message(m["role"], question_in(m["content"]) if m["role"] == "user"
                             else m["content"], m.get("weight")))
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


__all__ = ["EvalItem", "load_items", "repeated_questions"]
