"""The retrieval query of a turn: what the engine searches the documents with.

A follow-up such as "and how long does that take?" searched alone finds passages about
nothing in particular; the query must carry what it refers to. Two ways, chosen by
``retrieval.query.mode`` (``benchmarks/bench_followup.py`` measures both):

- ``last_turns``: the message, then the user turns before it, newest first, each cut at
  ``USER_CHARS`` (no model call; the message leads, so an embedder that truncates a long
  query cuts the oldest turn);
- ``rewrite``: the chat model, shown a few examples, writes the last message as a standalone
  question (one short generation before the search); a rewrite that repeats an example's
  question is dropped for the ``last_turns`` query.

    retrieval: {query: {mode: last_turns, turns: 2}}
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from chatbot.generate import GenerationSettings, Generator
from chatbot.types import Message

REPLY_CHARS = 300
"""An earlier answer shown to the rewrite is cut here: its topic is in its first sentences."""
USER_CHARS = 600
"""An earlier user turn is cut here, in the query and in the rewrite prompt: a pasted page
would make the query about itself, and the rewrite prompt stays a few hundred tokens whatever
the history (it is sent beside the answer's own budget)."""
STANDALONE_CHARS = 600
"""A message this long carries its own context: it is searched as it is, not rewritten."""
REWRITE_SETTINGS = GenerationSettings(max_new_tokens=48, temperature=0.0, repetition_penalty=1.0)

REWRITE_SYSTEM = (
    "You rewrite the user's last message as one standalone search question. Replace words "
    "such as it, that, this and they with what they refer to in the conversation. If the "
    "last message already stands alone, repeat it unchanged. Reply with the question only.")
REWRITE_EXAMPLES = (
    ("User: How do I renew my passport?\nAssistant: Apply online or fill in a paper form.",
     "How much does that cost?", "How much does renewing a passport cost?"),
    ("User: My landlord wants to keep my deposit.\nAssistant: Your deposit must be protected "
     "in a government-approved scheme.", "Can I get it back?",
     "Can I get my deposit back from my landlord?"),
    ("User: How do I back up the database?\nAssistant: Run the backup command nightly.",
     "What is the capital of France?", "What is the capital of France?"),
)

EXAMPLE_REWRITES = frozenset(rewritten.casefold() for _, _, rewritten in REWRITE_EXAMPLES)


@dataclass(frozen=True)
class QueryPolicy:
    mode: str = "last_turns"
    """``off``, ``last_turns`` or ``rewrite`` (see the module docstring)."""
    turns: int = 2
    """User turns in the query, the current one included (``rewrite``: turns it reads)."""


def retrieval_query(policy: QueryPolicy, question: str, history: Sequence[Message],
                    rewrite: Callable[[list[Message]], str]) -> str:
    """What to search for ``question`` after ``history``; ``rewrite(messages)`` runs the chat
    model on a prompt and returns its text.

    >>> retrieval_query(QueryPolicy("last_turns"), "How long does that take?",
    ...                 [Message("user", "How do I index?"), Message("assistant", "Sync.")], None)
    'How long does that take? How do I index?'
    """
    if policy.mode == "off" or policy.turns == 1:
        return question
    earlier = [m for m in history if m.role == "user" and m.content.strip()]
    earlier = earlier[-(policy.turns - 1):]  # an empty turn (an API history) takes no place
    if not earlier:
        return question
    recent = " ".join([question, *(_short(m) for m in reversed(earlier))])
    if policy.mode == "last_turns":  # cut as the rewrite's are: a pasted page drowns BM25
        return recent
    if len(question) > STANDALONE_CHARS:
        return question
    rewritten = standalone(rewrite(rewrite_messages(question, history, policy.turns)), question)
    if rewritten.casefold() in EXAMPLE_REWRITES - {question.casefold()}:
        return recent  # the model repeated a worked example, not this conversation
    return rewritten


def rewrite_messages(question: str, history: Sequence[Message], turns: int) -> list[Message]:
    """The few-shot prompt: instructions, worked examples, then the last ``turns - 1`` user
    turns (with the answers after them, cut short) and the message to rewrite."""
    starts = [i for i, m in enumerate(history)
              if m.role == "user" and m.content.strip()][-(turns - 1):]
    recent = history[starts[0]:] if starts else []
    shown = "\n".join(f"{m.role.capitalize()}: {_short(m)}" for m in recent
                      if m.role in ("user", "assistant"))
    messages = [Message("system", REWRITE_SYSTEM)]
    for conversation, last, rewritten in REWRITE_EXAMPLES:
        messages += [Message("user", _ask(conversation, last)), Message("assistant", rewritten)]
    return [*messages, Message("user", _ask(shown, question))]


def standalone(text: str, question: str) -> str:
    """The model's first line without quotes or a label; the question itself if it is empty."""
    line = next((part for part in text.strip().splitlines() if part.strip()), "")
    line = line.split(":", 1)[1] if line.lower().startswith("standalone") else line
    return line.strip().strip('"').strip() or question


def rewrite_with(generator: Generator, cancel: threading.Event | None = None
                 ) -> Callable[[list[Message]], str]:
    """``rewrite`` for :func:`retrieval_query` on ``generator``'s base model (no adapter),
    stopped at the first complete line."""

    def rewrite(messages: list[Message]) -> str:
        text = ""
        pieces = generator.stream(messages, REWRITE_SETTINGS, None, cancel=cancel)
        try:
            for piece in pieces:
                text += piece
                if "\n" in text.strip():
                    break
        finally:
            getattr(pieces, "close", lambda: None)()
        return text

    return rewrite


def _ask(conversation: str, last: str) -> str:
    return f"Conversation:\n{conversation}\n\nLast message: {last}\n\nStandalone question:"


def _short(message: Message) -> str:
    text = " ".join(message.content.split())
    limit = USER_CHARS if message.role == "user" else REPLY_CHARS
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0] + " ..."
