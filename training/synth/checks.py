"""The filters a generated item passes, each with the reason the report counts.

A question: parsed at all, of a sensible length, not a (near-)duplicate of one already kept
(``training.data.dedupe``: the dataset build's MinHash). An answer: present, of a sensible
length, not a refusal, and supported by its chunk by the attribution score the chat shows
(``chatbot.attribution.Attributor``, the index's embedder plus word overlap), at least the
chat's ``attribution.min_support``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from chatbot.attribution import Attributor
from chatbot.types import Message
from training.data.dedupe import dedupe
from training.data.transcripts import Conversation

QUESTION_WORDS = (3, 40)
ANSWER_WORDS = (3, 150)
DUPLICATE = "duplicate question"
QUESTION_STAGE = ("question too short", "question too long", DUPLICATE)
"""Reasons given before an answer is asked for: such questions were never tried."""
_DECLINED = re.compile(r"\bI (?:do not|don'?t|cannot|can'?t) (?:know|answer)\b", re.IGNORECASE)


@dataclass(frozen=True)
class Verdict:
    reason: str | None
    """Why the item was rejected; ``None``: kept."""
    support: float | None = None
    """The attribution score of the answer against its chunk, when it was computed."""


def _length_problem(text: str, what: str, bounds: tuple[int, int]) -> str | None:
    words = len(text.split())
    if words < bounds[0]:
        return f"{what} too short"
    if words > bounds[1]:
        return f"{what} too long"
    return None


def check_question(question: str) -> str | None:
    return _length_problem(question, "question", QUESTION_WORDS)


def check_answer(answer: str, passage: str, attributor: Attributor) -> Verdict:
    if not answer:
        return Verdict("no answer")
    if _DECLINED.search(answer):
        return Verdict("teacher declined")
    problem = _length_problem(answer, "answer", ANSWER_WORDS)
    if problem:
        return Verdict(problem)
    attribution = attributor(answer, [passage])
    if not any(sentence.claim for sentence in attribution.sentences):
        return Verdict("no checkable claim", attribution.score)
    if attribution.score < attributor.settings.min_support:
        return Verdict("unsupported by the chunk", attribution.score)
    return Verdict(None, attribution.score)


class QuestionDeduper:
    """Remembers the kept questions; new ones that (nearly) repeat one are duplicates."""

    def __init__(self, threshold: float | None, permutations: int) -> None:
        self.threshold, self.permutations = threshold, permutations
        self.kept: list[str] = []

    def remember(self, questions: list[str]) -> None:
        """Questions already tried (a resumed run's): later ones must not repeat them."""
        self.kept += questions

    def duplicates(self, questions: list[str]) -> list[bool]:
        """Per question, whether it repeats a kept one or an earlier one of ``questions``;
        the others are kept from now on."""
        records = [Conversation(str(n), (Message("user", text),), "")
                   for n, text in enumerate(self.kept + questions)]
        result, _ = dedupe(records, self.threshold, self.permutations)
        survivors = {int(c.id) for c in result.kept}
        repeated = [len(self.kept) + n not in survivors for n in range(len(questions))]
        self.kept += [q for q, dup in zip(questions, repeated) if not dup]
        return repeated
