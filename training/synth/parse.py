"""Reading the teacher's free text: whatever a small model writes, junk yields nothing, never
an exception."""

from __future__ import annotations

import re

_QUESTION = re.compile(r"[^?\n]*\?")
_LEAD = re.compile(r"^\s*(?:(?:Q(?:uestion)?\s*\d*|\d+)\s*[.):-]|[-*•])\s*", re.IGNORECASE)
_ANSWER_LEAD = re.compile(r"^\s*(?:A(?:nswer)?\s*:)\s*", re.IGNORECASE)
_ANSWER_END = re.compile(r"\n\s*(?:Question|Passage|Q)\s*(?:from\b|\d*\s*:)", re.IGNORECASE)


def parse_questions(text: str, limit: int) -> list[str]:
    """Up to ``limit`` distinct questions: each span ending with ``?``, numbering and quotes
    removed."""
    found: list[str] = []
    for match in _QUESTION.finditer(text):
        question = _LEAD.sub("", match.group()).strip().strip("\"'`").strip()
        question = " ".join(question.split())
        if len(question) > 1 and question.lower() not in {q.lower() for q in found}:
            found.append(question)
        if len(found) == limit:
            break
    return found


def enough_questions(text: str, count: int) -> bool:
    """Whether ``text`` already holds ``count`` questions: the teacher can stop there (a small
    model goes on repeating them until its token limit)."""
    return len(_QUESTION.findall(text)) >= count


def answer_ended(text: str) -> bool:
    """Whether the teacher has gone past its answer, on to a question of its own."""
    return _ANSWER_END.search(text) is not None


def parse_answer(text: str) -> str:
    """The answer without an ``Answer:`` label and without the next question or passage a
    small model goes on to invent."""
    answer = _ANSWER_END.split(text, maxsplit=1)[0]
    return _ANSWER_LEAD.sub("", answer).strip()
