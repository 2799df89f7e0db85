"""Retrieval quality on your own questions: context hit@k, evidence recall@k and MRR of what a
search puts into the prompt (merged passages and thresholds included).

A question file is JSONL, one question a line, with gold sentences or gold passages:

    {"question": "Can I renew online?", "gold_sentences": ["You can renew your passport online."]}
    {"question": "...", "gold_sentences": ["..."], "source": "renew.html"}
    {"question": "...", "gold_passages": ["docs/renew.md", "docs/fees.md#Fees > Refunds"]}

The question files of ``chatbot eval`` are read too: ``gold_ids`` (else ``gold_sources``, else
``doc_id``) count as ``gold_passages``, a ``scenario`` goes before the question, and a line
marked ``"not_answerable": true`` is left out (it has nothing to find) and counted in the report,
as are a question without gold items and a conversation (``messages``), named by line. A field
neither command reads (a typo?) is named in the report's warnings.

A gold sentence is found when its text (case and spacing aside) is inside a passage, location
included, and, with ``source``, the passage comes from that file. A gold passage is found when a
passage comes from a file whose path ends with it (or whose name without extension is it) and,
after a ``#``, covers a location that starts with what follows, or when it is the passage's
chunk id. *Context hit@k*: share of questions with a gold item in the top k;
*evidence recall@k*: share of each question's gold items there, averaged; *MRR*: mean 1/rank of
the first passage with a gold item, within the largest k. Each k is its own search, as the bot
would run it.

    chatbot index eval --data questions.jsonl --k 2,4,8 --json
"""

from __future__ import annotations

import codecs
import json
import re
import unicodedata
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from index.decoding import utf16_without_mark
from index.errors import EvalDataError
from index.jsonfile import UnreadFields
from index.text import clean_text, counted, shown
from index.types import Chunk, Hit

Search = Callable[[str, int], list[Hit]]


@dataclass(frozen=True)
class EvalQuestion:
    question: str
    gold_sentences: tuple[str, ...] = ()
    gold_passages: tuple[str, ...] = ()
    source: str | None = None
    """With ``gold_sentences``: the file they are in; a passage from another file never counts."""


@dataclass(frozen=True)
class Miss:
    """A question none of whose gold items is in the largest k's passages."""

    question: str
    passages: tuple[str, ...]
    """What was found instead: each passage's ``source > location``, best first."""


@dataclass(frozen=True)
class EvalReport:
    questions: int
    hit: dict[int, float]
    """k -> share of questions with a gold item in the top k passages."""
    recall: dict[int, float]
    """k -> share of gold items in the top k passages, averaged over questions."""
    mrr: float
    words: dict[int, float]
    """k -> words in the top k passages, averaged: what a larger k or merging costs the prompt."""
    not_answerable: int = 0
    """Questions of the file marked ``not_answerable``, left out: they have nothing to find."""
    left_out: dict[str, list[int]] = field(default_factory=dict)
    """The other lines left out, by why (a key of :data:`LEFT_OUT`): their line numbers."""
    misses: tuple[Miss, ...] = ()
    """The questions with no gold item at the largest k: where to look first."""
    not_indexed: tuple[str, ...] = ()
    """Gold items that no indexed chunk holds, so no search can find them: a typo, a file not
    indexed, a sentence the chunking split. They are counted as misses all the same."""
    warnings: tuple[str, ...] = ()
    """About the question file: each field it has that is not read, a typo perhaps."""

    def to_json(self) -> dict:
        return asdict(self)

    def table(self, shown_misses: int = 10) -> str:
        """The metrics as a table, then the first ``shown_misses`` misses (``--json``: all)."""
        rows = [f"| {k} | {self.hit[k]:.3f} | {self.recall[k]:.3f} | {self.words[k]:.0f} |"
                for k in self.hit]
        lines = [f"{self.questions} questions{self._left_out_count()}; MRR {self.mrr:.3f}",
                 "| k | context hit@k | evidence recall@k | context words |",
                 "|---|---|---|---|", *rows]
        if self.left_out:
            lines += ["", "Left out, as there is nothing to score:"]
            lines += [f"- {_line_numbers(numbers)}: {LEFT_OUT[why]}"
                      for why, numbers in self.left_out.items()]
        if self.not_indexed:
            lines += ["", f"{len(self.not_indexed)} gold item(s) are in no indexed chunk (of "
                          "the file their source names, where one is given), so they count as "
                          "misses whatever the search does (a typo? a file not indexed? another "
                          "file's sentence?):"]
            lines += [f"- {_short(item)}" for item in self.not_indexed[:shown_misses]]
            if len(self.not_indexed) > shown_misses:
                lines.append(f"- ... {len(self.not_indexed) - shown_misses} more "
                             "(--json lists all)")
        if self.misses:
            lines += ["", f"No gold item in the top {max(self.hit)} for "
                          f"{counted(len(self.misses), 'question')}; the first passage found "
                          "instead:"]
            lines += [f"- {_short(m.question)} -> {m.passages[0] if m.passages else 'nothing'}"
                      for m in self.misses[:shown_misses]]
            if len(self.misses) > shown_misses:
                lines.append(f"- ... {len(self.misses) - shown_misses} more (--json lists all)")
        return "\n".join(lines)

    def _left_out_count(self) -> str:
        """`` (2 marked not_answerable, 3 with nothing to score left out)``, or nothing."""
        others = sum(map(len, self.left_out.values()))
        counts = [f"{self.not_answerable} marked not_answerable" if self.not_answerable else "",
                  f"{others} with nothing to score" if others else ""]
        shown = ", ".join(count for count in counts if count)
        return f" ({shown} left out)" if shown else ""


LEFT_OUT = {"no_gold": "no gold item to find (gold_sentences, gold_passages, gold_sources or "
                       "gold_ids)",
            "conversation": "a conversation (messages): index eval searches single questions"}
"""Why a line ``chatbot eval`` reads can't be scored here: it is left out, and named."""


@dataclass(frozen=True)
class QuestionFile:
    questions: list[EvalQuestion]
    not_answerable: int
    """Lines marked ``"not_answerable": true``: left out of the measure."""
    left_out: dict[str, list[int]] = field(default_factory=dict)
    """The other lines left out, by why (a key of :data:`LEFT_OUT`)."""
    warnings: tuple[str, ...] = ()
    """Each field of the file's lines that is not read, with the first line it is on."""


FIELDS = ("question", "gold_sentences", "gold_passages", "gold_sources", "gold_ids", "doc_id",
          "source", "scenario", "not_answerable")
"""What a question line is read by."""
CHATBOT_EVAL_FIELDS = ("answers", "answer", "id", "evidences_html", "url", "title",
                       "evidence_passage_ids")
"""The other fields of ``chatbot eval``'s question files (ConditionalQA's among them): one file
serves both commands, so these are expected here, unread."""


def load_questions(path: Path) -> QuestionFile:
    """The questions of a JSONL file; every malformed line is reported at once, by number."""
    try:
        data = Path(path).read_bytes().removeprefix(codecs.BOM_UTF8)  # a spreadsheet's BOM
    except OSError as exc:
        raise EvalDataError(f"cannot read {shown(path)}: {exc.strerror or exc}") from None
    # PowerShell's >, say; refused as `chatbot eval`, which reads the same files, refuses it
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or utf16_without_mark(data):
        raise EvalDataError(f"{shown(path)}: UTF-16 text; save the file as UTF-8")
    questions, problems, not_answerable, left_out = [], {}, 0, {}
    unread = UnreadFields(FIELDS, CHATBOT_EVAL_FIELDS)
    # Split as bytes: str.splitlines also splits at a U+2028 inside a JSON string.
    for number, raw in enumerate(data.splitlines(), start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            problems.setdefault("not UTF-8 text (save the file as UTF-8)", []).append(number)
            continue
        if line.strip():
            try:
                row = json.loads(line)
                question = _question(row)
            except json.JSONDecodeError as exc:  # its message's column differs from line to line
                problems.setdefault(f"not valid JSON ({exc.msg})", []).append(number)
                continue
            except (ValueError, TypeError) as exc:
                problems.setdefault(str(exc), []).append(number)
                continue
            except RecursionError:  # Python's parser gives up at about 1,000 levels
                problems.setdefault("JSON nested too deeply to read", []).append(number)
                continue
            if question != "conversation":  # left out whatever its fields
                unread.note(row, number)
            if isinstance(question, EvalQuestion):
                questions.append(question)
            elif question == "not_answerable":
                not_answerable += 1
            else:
                left_out.setdefault(question, []).append(number)
    if problems:
        raise EvalDataError(f"{shown(path)}: " + "; ".join(
            f"{_line_numbers(numbers)}: {problem}" for problem, numbers in problems.items()))
    if not questions:
        unread_names = ", ".join(json.dumps(name, ensure_ascii=False)
                                 for name in unread.first_line)
        raise EvalDataError(f"{shown(path)}: no questions with gold items; expected JSONL "
                            'lines such as {"question": "...", "gold_sentences": ["..."]}'
                            + (f" (fields not read: {unread_names}; a typo?)"
                               if unread_names else ""))
    return QuestionFile(questions, not_answerable, left_out, tuple(unread.warnings(path)))


def _question(row) -> EvalQuestion | str:
    """The line's question, or why it is left out: ``not_answerable`` or a key of
    :data:`LEFT_OUT`."""
    if isinstance(row, dict) and "messages" in row:  # as `chatbot eval` tells them apart
        return "conversation"
    if not isinstance(row, dict) or not _text(row.get("question")):
        raise ValueError('needs "question" (a string that is not empty)')
    if not isinstance(row.get("not_answerable", False), bool):
        raise ValueError('"not_answerable" must be true or false (not in quotes)')
    if row.get("not_answerable"):
        return "not_answerable"
    sentences = row.get("gold_sentences", [])
    key, passages = _gold_passages(row)
    for name, value in (("gold_sentences", sentences), (key, passages)):
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise ValueError(f'"{name}" must be a list of non-empty strings')
    if sentences and passages:
        raise ValueError('give "gold_sentences" or "gold_passages", not both')
    if not (sentences or passages):
        return "no_gold"
    for name in ("source", "scenario"):  # null: none, as `chatbot eval` reads it
        if not isinstance(row.get(name) or "", str):
            raise ValueError(f'"{name}" must be a string')
    scenario = _text(row.get("scenario") or "")
    question = f"{scenario} {_text(row['question'])}" if scenario else _text(row["question"])
    return EvalQuestion(question, tuple(sentences), tuple(passages), row.get("source") or None)


def _gold_passages(row: dict) -> tuple[str, object]:
    """The line's gold passages and the field they are in. ``chatbot eval``'s fields are read
    as it reads them: ``gold_ids``, else ``gold_sources``, else ConditionalQA's ``doc_id``; one
    may be given without a list, a number as its digits. ``gold_passages`` comes first: a
    synthetic test set gives ``gold_ids`` (the document, for ``chatbot eval``) beside it (the
    passage in that document)."""
    if "gold_passages" in row:
        if "gold_sources" in row:
            raise ValueError('"gold_sources" and "gold_passages" are the same; give one of them')
        return "gold_passages", row["gold_passages"]
    for key in ("gold_ids", "gold_sources", "doc_id"):
        if row.get(key):
            value = row[key] if isinstance(row[key], list) else [row[key]]
            return key, [str(v) if isinstance(v, (int, float)) and not isinstance(v, bool)
                         else v for v in value]
    return "gold_passages", []


def _text(value: object) -> str:
    """A question's text as searched: cleaned as chat messages are, in Unicode's composed
    form, trimmed (empty when there is none)."""
    if not isinstance(value, str):
        return ""
    return unicodedata.normalize("NFC", clean_text(value)).strip()


def _line_numbers(numbers: list[int]) -> str:
    """``line 3``, ``lines 3, 5`` or, for many, ``lines 3, 5, 8, ... (12 lines)``."""
    if len(numbers) == 1:
        return f"line {numbers[0]}"
    shown = ", ".join(map(str, numbers[:3]))
    return f"lines {shown}" + (f", ... ({len(numbers)} lines)" if len(numbers) > 3 else "")


def evaluate(search: Search, questions: list[EvalQuestion], ks: tuple[int, ...],
             progress: Callable[[int, int], None] | None = None) -> EvalReport:
    """Search each question once per k: with neighbour merging (or MMR) the first k passages of
    a wider search are not what a search for k returns. ``progress(done, total)`` follows each
    question."""
    ks = tuple(sorted(set(ks)))
    hit, recall, words = ({k: 0.0 for k in ks} for _ in range(3))
    mrr, misses = 0.0, []
    for done, question in enumerate(questions, start=1):
        gold = len(question.gold_sentences or question.gold_passages)
        for k in ks:
            hits = search(question.question, k)[:k]
            covered = [_covered(h, question) for h in hits]
            found = set().union(*covered)
            hit[k] += bool(found)
            recall[k] += len(found) / gold
            words[k] += sum(len(h.text.split()) for h in hits)
        mrr += next((1 / rank for rank, c in enumerate(covered, start=1) if c), 0.0)
        if not found:
            misses.append(Miss(question.question, tuple(_place(h) for h in hits)))
        if progress:
            progress(done, len(questions))
    n = len(questions)
    return EvalReport(n, {k: v / n for k, v in hit.items()}, {k: v / n for k, v in recall.items()},
                      mrr / n, {k: v / n for k, v in words.items()}, misses=tuple(misses))


def gold_not_indexed(questions: list[EvalQuestion], chunks: list[Chunk]) -> tuple[str, ...]:
    """The gold items of ``questions`` that none of ``chunks`` (the whole index) holds, matched
    as a search's passages are."""
    by_source: dict[str, list[Chunk]] = {}
    for chunk in chunks:
        by_source.setdefault(chunk.source, []).append(chunk)
    texts = {source: "\0".join(_norm(f"{c.location} {c.text}") for c in found)
             for source, found in by_source.items()}
    ids = {chunk.chunk_id for chunk in chunks}
    missing = []
    for question in questions:
        for gold in question.gold_passages:
            if gold not in ids and not any(_passage_matches(source, [c.location for c in found],
                                                            gold)
                                           for source, found in by_source.items()):
                missing.append(gold)
        sources = [s for s in texts if not question.source or _same_file(s, question.source)]
        missing += [sentence for sentence in question.gold_sentences
                    if not any(_norm(sentence) in texts[source] for source in sources)]
    return tuple(dict.fromkeys(missing))


def _short(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _place(hit: Hit) -> str:
    return f"{hit.source} > {hit.location}" if hit.location else hit.source


def _covered(hit: Hit, question: EvalQuestion) -> set[int]:
    """Which of the question's gold items (by position) ``hit`` holds."""
    locations = hit.chunk.metadata.get("locations") or [hit.location]
    if question.gold_passages:
        ids = {hit.chunk.chunk_id, *hit.chunk.metadata.get("parts", ())}  # a merged passage's
        return {i for i, gold in enumerate(question.gold_passages)
                if gold in ids or _passage_matches(hit.source, locations, gold)}
    if question.source and not _same_file(hit.source, question.source):
        return set()
    text = _norm(" ".join([*locations, hit.text]))
    return {i for i, sentence in enumerate(question.gold_sentences) if _norm(sentence) in text}


def _passage_matches(source: str, locations: list[str], gold: str) -> bool:
    path, _, location = gold.partition("#")
    if not _same_file(source, path):
        return False
    wanted = _norm(location)
    return not wanted or any(_norm(loc).startswith(wanted) for loc in locations)


def _same_file(source: str, wanted: str) -> bool:
    source, wanted = Path(source).as_posix(), Path(wanted).as_posix().removeprefix("./")
    return (source == wanted or source.endswith("/" + wanted)  # a file named by a short path,
            or wanted.endswith("/" + source)  # or a shown name given by the full path,
            or ("/" not in wanted and Path(source).stem == wanted))  # or without its extension


def _norm(text: str) -> str:
    """Text as gold items are matched: case, spacing and Unicode composition aside."""
    return re.sub(r"\s+", " ", unicodedata.normalize("NFC", text)).strip().lower()
