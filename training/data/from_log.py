"""The conversation log as training examples: one per finished assistant answer.

Each example is the exact ``messages_json`` the model was sent at chat time (system prompt,
history, the question with its numbered sources, in the variant's template) followed by the
answer, so the model is trained on the prompt it is served with; the answers inside that prompt
are context only (``as_context``). Examples of one session share
a ``group`` and land on the same side of the train/validation split. With
``with_sources=False`` the question is rendered again without its sources (same template,
same history), for training a model to answer without retrieved passages.

    chatbot data build --name NAME --from logs
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path

from chatbot.logs import ConversationLog, LoggedConversation, LoggedTurn
from chatbot.migrations import log_exists
from chatbot.types import Message
from training.data.transcripts import Conversation, ImportResult, Problem, InvalidRecord, validate

LOG_SOURCE = "logs"


def read_log(path: Path, with_sources: bool = True,
             template_for: Callable[[str | None], object] | None = None,
             bot_name: str = "chatbot-builder", corrections: str = "prefer") -> ImportResult:
    """Every finished answer in the log at ``path`` (none if the file does not exist).

    ``template_for(variant)`` gives the prompt template of a variant; it is only needed with
    ``with_sources=False``. A corrected answer's target is its latest correction
    (``meta["corrected"]``) unless ``corrections`` is ``ignore``.
    """
    if not log_exists(path):
        return ImportResult([], [], 0)
    log = ConversationLog(path)
    try:
        conversations, problems, records = [], [], 0
        for session in log.conversations():
            for turn in session.turns:
                if turn.role != "assistant":
                    continue
                records += 1
                example = _example(session, turn, corrections != "ignore")
                if not with_sources and isinstance(example, Conversation):
                    example = _without_sources(example, session, turn, template_for, bot_name)
                if isinstance(example, Problem):
                    problems.append(example)
                else:
                    conversations.append(example)
    finally:
        log.close()
    return ImportResult(conversations, problems, records)


def _example(session: LoggedConversation, turn: LoggedTurn,
             use_correction: bool = True) -> Conversation | Problem:
    where = f"{LOG_SOURCE}:{session.session_id}"
    corrected = use_correction and turn.correction is not None
    if turn.status != "complete" and not corrected:  # a cut answer is used by its correction
        return Problem(where, turn.position, f"answer is {turn.status}, not used; `chatbot logs "
                       f"correct {turn.id} --text ...` writes the answer to train on instead")
    if not turn.messages:
        return Problem(where, turn.position, "no prompt recorded with this answer")
    try:
        sent = as_context(Message(m["role"], m["content"]) for m in turn.messages)
    except (KeyError, TypeError):
        return Problem(where, turn.position, "recorded prompt is not a list of role/content")
    target = turn.correction if corrected else turn.text
    messages = sent + (Message("assistant", target),)
    try:
        validate(messages)
    except InvalidRecord as exc:
        return Problem(where, turn.position, str(exc), exc.index)
    meta = {"rating": turn.rating, "comment": turn.comment, "variant": turn.variant,
            "turn_id": turn.id, "hits": len(turn.hits), "corrected": corrected,
            "approved": turn.approved}
    return Conversation(f"{where}:{turn.position}", messages, LOG_SOURCE, meta,
                        group=where, dialogue=spoken(session, turn, target))


def spoken(session: LoggedConversation, turn: LoggedTurn, *answers: str) -> tuple[Message, ...]:
    """What the people of ``session`` said up to ``turn``, then ``answers`` in its place: the
    ``dialogue`` that name detection and deduplication read, not the sources in the prompt."""
    said = tuple(Message(t.role, t.text) for t in session.turns
                 if t.position < turn.position and t.role in ("user", "assistant"))
    return said + tuple(Message("assistant", answer) for answer in answers)


def as_context(messages: Iterable[Message]) -> tuple[Message, ...]:
    """A logged prompt's messages with its answers (few-shot examples, earlier turns) marked as
    context only (``weight`` 0): each earlier answer is an example of its own, kept or dropped
    by its own feedback and trained on its correction, so it must not be learned again, as
    generated, inside every later turn's example."""
    return tuple(replace(m, weight=0) if m.role == "assistant" else m for m in messages)


def _without_sources(example: Conversation, session: LoggedConversation, turn: LoggedTurn,
                     template_for: Callable[[str | None], object] | None,
                     bot_name: str) -> Conversation:
    from chatbot.prompts import build_messages

    if template_for is None:
        raise ValueError("template_for is needed to render logged questions without sources")
    question = next(t.text for t in reversed(session.turns)
                    if t.position < turn.position and t.role == "user")
    template = template_for(turn.variant)
    history = example.messages[1 + len(template.examples()):-2]  # as sent, after the examples
    rendered = build_messages(template, question, [], history=history, bot_name=bot_name)
    return replace(example, messages=as_context(rendered) + example.messages[-1:],
                   meta={**example.meta, "sources": "removed"})
