"""Imported transcript files to validated conversations, with positional problems.

Formats, recognised per JSONL line (or per element of a ``.json`` file's array): OpenAI chat
(``{"messages": [{"role", "content"}]}``), ShareGPT
(``{"conversations": [{"from": "human"|"gpt"|"system", "value"}]}``), Schema-Guided Dialogue
rows (``{"turns": [{"speaker": "USER"|"SYSTEM", "utterance"}]}``) and simple question/answer
rows (JSONL or CSV, field names configurable). A bad line (malformed or too deeply nested JSON,
bytes that are not UTF-8, a wrong message) is reported with its file, line and message index
and skipped, the rest of the file is kept; ``strict=True`` turns any problem into an error.

    chatbot data build --name NAME --from transcripts.jsonl
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from chatbot.prompts import question_in
from chatbot.types import Message
from index.text import counted
from training.data.transcript_rows import (Malformed, csv_rows, json_array_rows, jsonl_rows,
                                           transcript_text)
from training.errors import DataError

ROLES = ("system", "user", "assistant")
_LIST_KEYS = {"openai": "messages", "sharegpt": "conversations", "sgd": "turns"}
SHAREGPT_ROLES = {"human": "user", "gpt": "assistant", "system": "system"}
SGD_ROLES = {"USER": "user", "SYSTEM": "assistant"}
MAX_PROBLEMS_IN_ERROR = 20
_SURROGATE = re.compile("[\ud800-\udfff]")
"""A lone surrogate: JSON allows it as a ``\\uXXXX`` escape; tokenizers can't encode it."""


@dataclass(frozen=True)
class Conversation:
    """One training example: the messages the model sees, the last assistant turn a target.

    ``group`` is what the train/validation split keeps together (a logged session whose turns
    became several examples); for an imported conversation it is its own ``id``. ``dialogue``
    holds what the people said, without the system prompt or rendered sources, for name
    detection and deduplication; empty means "the non-system messages, each user message's
    question read out of its rendered sources" (a re-imported export brings its prompts).
    """

    id: str
    messages: tuple[Message, ...]
    source: str
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    group: str = ""
    dialogue: tuple[Message, ...] = ()

    @property
    def split_key(self) -> str:
        return self.group or self.id

    @property
    def turns(self) -> tuple[Message, ...]:
        return self.dialogue or tuple(
            Message(m.role, question_in(m.content)) if m.role == "user" else m
            for m in self.messages if m.role != "system")

    def count(self, role: str) -> int:
        return sum(1 for message in self.messages if message.role == role)


@dataclass(frozen=True)
class Problem:
    """Why one line (or a whole file, ``line == 0``) or a JSON array's ``element`` was
    skipped."""

    file: str
    line: int
    message: str
    index: int | None = None
    key: str = "messages"
    """The list ``index`` points into: ``messages``, ``conversations`` or ``turns``."""
    element: int | None = None

    def __str__(self) -> str:
        where = (f"{self.file}[{self.element}]" if self.element is not None
                 else self.file if self.line == 0 else f"{self.file}:{self.line}")
        at = "" if self.index is None else f" {self.key}[{self.index}]:"
        return f"{where}:{at} {self.message}"


@dataclass(frozen=True)
class ImportResult:
    conversations: list[Conversation]
    problems: list[Problem]
    records: int
    """Lines or rows read, valid or not (a file that could not be parsed counts none)."""

    @property
    def skipped(self) -> int:
        return self.records - len(self.conversations)


@dataclass(frozen=True)
class QAFields:
    """Field names of question/answer imports (JSONL keys or CSV header columns)."""

    question: str = "question"
    answer: str = "answer"
    system: str | None = None


_JSON_KINDS = {dict: "an object", list: "a list", str: "a string", bool: "true or false",
               int: "a number", float: "a number", type(None): "null"}


def json_kind(value: Any) -> str:
    """What ``value`` is in the words of the JSON its file was written in ("null", not
    Python's "NoneType")."""
    return _JSON_KINDS.get(type(value), type(value).__name__)


class InvalidRecord(Exception):
    """One record that can't be used; ``index`` is the position in its ``key`` list."""

    def __init__(self, message: str, index: int | None = None, key: str = "messages") -> None:
        super().__init__(message)
        self.index = index
        self.key = key


def read_transcripts(paths: Iterable[str | Path], qa: QAFields = QAFields(),
                     strict: bool = False) -> ImportResult:
    """Every valid conversation in ``paths``; problems are collected (or raised if strict)."""
    conversations: list[Conversation] = []
    problems: list[Problem] = []
    records = 0
    paths = [Path(p) for p in paths]
    names = Counter(p.name for p in paths)
    seen: set[Path] = set()
    for path in paths:
        if path.resolve() in seen:
            problems.append(Problem(str(path), 0, "given more than once; read once"))
            continue
        seen.add(path.resolve())
        # Ids are "file:line"; two files of one name in different folders keep their paths.
        result = read_file(path, qa, label=path.name if names[path.name] == 1 else str(path))
        conversations += result.conversations
        problems += result.problems
        records += result.records
    if strict and problems:
        shown = "\n  ".join(str(p) for p in problems[:MAX_PROBLEMS_IN_ERROR])
        more = len(problems) - MAX_PROBLEMS_IN_ERROR
        tail = f"\n  ... and {more} more" if more > 0 else ""
        raise DataError(f"{counted(len(problems), 'problem')} in the imported transcripts (strict "
                        f"mode; fix them or drop --strict to skip those lines):\n  {shown}{tail}")
    return ImportResult(conversations, problems, records)


def read_file(path: Path, qa: QAFields = QAFields(), label: str | None = None) -> ImportResult:
    """One transcript file; an unreadable file is one problem at line 0.

    Conversation ids are ``LABEL:LINE``, or ``LABEL[INDEX]`` for an element of a JSON array
    (``label`` defaults to the file name).
    """
    name = str(path)
    try:
        text = transcript_text(path.read_bytes())
    except FileNotFoundError:
        return ImportResult([], [Problem(name, 0, "file not found")], 0)
    except OSError as exc:
        return ImportResult([], [Problem(name, 0, f"cannot read: {exc.strerror}")], 0)
    except DataError as exc:
        return ImportResult([], [Problem(name, 0, str(exc))], 0)
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        rows = csv_rows(text, qa.question, qa.answer, qa.system)
    elif suffix in (".jsonl", ".ndjson"):
        rows = jsonl_rows(text)
    elif suffix == ".json":
        rows = json_array_rows(text)
    else:
        return ImportResult([], [Problem(name, 0, f"unsupported file type {suffix or '(none)'!r}; "
                                                  "expected .jsonl (one JSON object a line), "
                                                  ".json (an array of them) or .csv/.tsv")], 0)
    return _collect(name, label or path.name, rows, qa, array=suffix == ".json")


def _collect(name: str, stem: str, rows: Iterator[tuple[int, Any]], qa: QAFields,
             array: bool = False) -> ImportResult:
    """The conversations of ``rows``, numbered by line, or by element when ``array``."""
    from training.data.rated_answers import rated_answers  # which reads this module's records

    conversations, problems, records = [], [], 0
    try:
        for at, record in rows:
            records += 1
            where = {"element": at} if array else {"line": at}
            try:
                messages, fmt = to_messages(record, qa)
                validate(messages, _LIST_KEYS.get(fmt, "messages"))
                examples = rated_answers(Conversation(
                    f"{stem}[{at}]" if array else f"{stem}:{at}", messages, name,
                    {"format": fmt, **where}), record)
                records += len(examples) - 1  # an export's answers count as the log's do
                conversations += examples
            except InvalidRecord as exc:
                problems.append(Problem(name, 0 if array else at, str(exc), exc.index, exc.key,
                                        element=at if array else None))
    except DataError as exc:  # the file as a whole cannot be parsed (e.g. a CSV header)
        return ImportResult([], [Problem(name, 0, str(exc))], 0)
    return ImportResult(conversations, problems, records)


def to_messages(record: Any, qa: QAFields = QAFields()) -> tuple[tuple[Message, ...], str]:
    """Messages and the format name of one parsed record; raises ``InvalidRecord``."""
    if isinstance(record, Malformed):
        raise InvalidRecord(record.reason)
    if not isinstance(record, dict):
        raise InvalidRecord(f"expected a JSON object, got {json_kind(record)}")
    if "messages" in record:
        return _listed(record["messages"], "messages", "role", "content", None), "openai"
    if "conversations" in record:
        return _listed(record["conversations"], "conversations", "from", "value",
                       SHAREGPT_ROLES), "sharegpt"
    if "turns" in record:
        return _listed(record["turns"], "turns", "speaker", "utterance", SGD_ROLES), "sgd"
    if qa.question in record or qa.answer in record:
        return _qa_messages(record, qa), "qa"
    names = list(record)
    more = f" and {len(names) - 5} more" if len(names) > 5 else ""
    raise InvalidRecord(f"unrecognised record with the field(s) {', '.join(names[:5]) or 'none'}"
                        f"{more}: expected 'messages' (OpenAI), 'conversations' (ShareGPT), "
                        f"'turns' (SGD) or '{qa.question}'/'{qa.answer}' fields (set "
                        "data.question_field/data.answer_field in the config to read others)")


def _listed(items: Any, key: str, role_key: str, text_key: str,
            roles: dict[str, str] | None) -> tuple[Message, ...]:
    if not isinstance(items, list):
        raise InvalidRecord(f"'{key}' must be a list, got {json_kind(items)}", key=key)
    messages = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise InvalidRecord(f"expected an object with '{role_key}' and '{text_key}'", index,
                                key)
        role, text = item.get(role_key), _parts_text(item.get(text_key), text_key, index, key)
        known = roles if roles is not None else {r: r for r in ROLES}
        if role not in known:
            raise InvalidRecord(f"unknown role {role!r} (expected one of: {', '.join(known)})",
                                index, key)
        if not isinstance(text, str):
            raise InvalidRecord(f"'{text_key}' must be a string, got {json_kind(text)}",
                                index, key)
        messages.append(Message(known[role], text, _weight(item, known[role], index, key)))
    return tuple(messages)


def _parts_text(value: Any, text_key: str, index: int, key: str) -> Any:
    """OpenAI's list of content parts as the bot's API reads it: its text parts joined by line
    breaks; any other value as it is."""
    if not (isinstance(value, list) and value and all(isinstance(p, dict) for p in value)):
        return value
    for part in value:
        if part.get("type") != "text" or not isinstance(part.get("text"), str):
            raise InvalidRecord(f"'{text_key}' has a part of type {part.get('type')!r}; only "
                                "text can be trained on", index, key)
    return "\n".join(part["text"] for part in value)


def _weight(item: dict, role: str, index: int, key: str) -> int | None:
    """OpenAI's fine-tuning ``weight`` of an assistant message: 0 (context only) or 1."""
    if "weight" not in item:
        return None
    weight = item["weight"]
    if role != "assistant" or weight not in (0, 1) or isinstance(weight, bool):
        raise InvalidRecord(f"'weight' is {weight!r}; only an assistant message may carry one, "
                            "0 (context only) or 1 (learned)", index, key)
    return weight


def _qa_messages(record: dict, qa: QAFields) -> tuple[Message, ...]:
    messages = []
    if qa.system and _qa_text(record, qa.system).strip():
        messages.append(Message("system", _qa_text(record, qa.system)))
    for role, name in (("user", qa.question), ("assistant", qa.answer)):
        if record.get(name) is None:
            raise InvalidRecord(f"missing field '{name}'")
        messages.append(Message(role, _qa_text(record, name)))
    return tuple(messages)


def _qa_text(record: dict, name: str) -> str:
    """A question/answer field as text: a number is its digits, but a list, an object or a
    boolean would be trained on as its Python spelling ("['a']", "True")."""
    value = record.get(name)
    if value is None or isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return "" if value is None else str(value)
    raise InvalidRecord(f"'{name}' must be a string, got {json_kind(value)}")


def validate(messages: tuple[Message, ...], key: str = "messages") -> None:
    """Raise ``InvalidRecord`` at the first message that breaks the user/assistant alternation
    or holds a lone surrogate."""
    if not messages:
        raise InvalidRecord("no messages")
    try:
        _check_order(messages)
    except InvalidRecord as exc:
        raise InvalidRecord(str(exc).replace("messages[", f"{key}["), exc.index, key) from None


def _check_order(messages: tuple[Message, ...]) -> None:
    previous = None
    for index, message in enumerate(messages):
        if message.role == "system" and index != 0:
            raise InvalidRecord("a system message is only allowed first", index)
        if message.role == previous and message.role != "system":
            raise InvalidRecord(f"two {message.role} messages in a row "
                                f"(messages[{index - 1}] and messages[{index}])", index)
        if message.learned and not message.content.strip():
            # an empty answer the model once gave stays as context, as it was sent
            raise InvalidRecord("empty assistant message", index)
        if message.role == "user" and not message.content.strip():
            raise InvalidRecord("empty user message", index)
        if _SURROGATE.search(message.content):
            raise InvalidRecord("a lone surrogate (an unpaired \\ud800-\\udfff escape) is not "
                                "text; remove it", index)
        if message.role == "assistant" and previous != "user":
            raise InvalidRecord("an assistant message must follow a user message", index)
        previous = message.role
    if messages[-1].role != "assistant":
        raise InvalidRecord("the last message must be the assistant's answer "
                            "(the training target)", len(messages) - 1)

