"""The teacher: any variant of the bot (a local model, or a big one behind a ``backend``),
asked through the engine's own generators with the synthesis templates in ``templates/``.

Each template is a prompt template like the chat's (``chatbot.prompts``): a ``system`` and a
``user`` block plus few-shot turns declared with ``{% set examples = [...] %}``, hashed, so a
run records exactly what it asked.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from chatbot.engine import Engine
from chatbot.errors import InputError
from chatbot.prompts import PromptTemplate, load_template
from chatbot.types import Message
from index.types import Chunk
from training.errors import DataError
from training.synth.parse import answer_ended, enough_questions, parse_questions

TEMPLATES = Path(__file__).parent / "templates"
QUESTION_TOKENS = 40
"""New tokens allowed per question asked for (a question is rarely over 30)."""
ANSWER_TOKENS = 120
"""Three sentences, with room to spare; a small model that rambles is cut here."""


@dataclass(frozen=True)
class TeacherCall:
    """One request to the teacher and its raw response, as the call log keeps it."""

    kind: str
    """``questions`` or ``answer``."""
    messages: tuple[Message, ...]
    response: str
    seconds: float

    def as_dict(self) -> dict:
        return {"kind": self.kind, "messages": [m.as_dict() for m in self.messages],
                "response": self.response, "seconds": round(self.seconds, 3)}


def synth_template(kind: str) -> PromptTemplate:
    return load_template(str(TEMPLATES / f"{kind}.j2"))


class Teacher:
    """Asks one variant of ``engine`` for questions about a chunk and for grounded answers."""

    def __init__(self, engine: Engine, variant: str, bot_name: str) -> None:
        try:
            self.variant = engine.variant(variant)
        except InputError:
            raise DataError(
                f"teacher variant {variant!r} is unknown; variants: {', '.join(engine.variants)}. "
                "Declare it under `variants:` in the config (a variant with a `backend:` asks a "
                "big model on a server)") from None
        self.engine, self.bot_name = engine, bot_name
        self.templates = {kind: synth_template(kind) for kind in ("questions", "answer")}

    def describe(self) -> dict:
        """What decides the teacher's output, recorded with the run and checked on resume."""
        return {"variant": self.variant.name, "model": self.variant.model,
                "backend": self.variant.backend, "adapter": self.variant.adapter_id,
                "templates": {kind: t.hash for kind, t in self.templates.items()}}

    def example_questions(self) -> list[str]:
        """The questions of the few-shot turns: a small teacher copies them, and such copies
        are rejected as duplicates before an answer is asked for."""
        return [question for message in self.templates["questions"].examples()
                if message.role == "assistant"
                for question in parse_questions(message.content, 100)]

    def questions(self, chunk: Chunk, count: int) -> TeacherCall:
        return self._ask("questions", chunk, "", count, QUESTION_TOKENS * count,
                         lambda text: enough_questions(text, count))

    def answer(self, chunk: Chunk, question: str) -> TeacherCall:
        return self._ask("answer", chunk, question, 1, ANSWER_TOKENS, answer_ended)

    def _ask(self, kind: str, chunk: Chunk, question: str, count: int, max_new_tokens: int,
             done: Callable[[str], bool]) -> TeacherCall:
        """The teacher's response, cut short once ``done`` says it has what was asked for."""
        template = self.templates[kind]
        variables = {"bot_name": self.bot_name, "source": chunk.source,
                     "location": chunk.location, "passage": chunk.text, "question": question,
                     "count": count}
        messages = (Message("system", template.render("system", **variables)),
                    *template.examples(), Message("user", template.render("user", **variables)))
        generator = self.engine.generator_for(self.variant)
        adapter = self.variant.name if self.variant.adapter_dir else None
        settings = replace(self.engine.settings, max_new_tokens=max_new_tokens)
        started, response = time.perf_counter(), ""
        pieces = generator.stream(list(messages), settings, adapter)
        try:
            for piece in pieces:
                response += piece
                if done(response):
                    break
        finally:  # stops the generation at once, as the engine does for a reader that left
            getattr(pieces, "close", lambda: None)()
        return TeacherCall(kind, messages, response, time.perf_counter() - started)
