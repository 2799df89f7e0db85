"""A follow-up's retrieval query carries the turn it refers to; it is logged and shown."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from chatbot.answer_stream import RetrievalPolicy
from chatbot.engine import Engine
from chatbot.generate import GenerationSettings
from chatbot.logs import ConversationLog
from chatbot.retrieval_query import (REWRITE_SYSTEM, USER_CHARS, QueryPolicy, retrieval_query,
                                     rewrite_messages, standalone)
from chatbot.types import Message
from chatbot.variants import Variant
from index.types import Chunk, Hit

FIRST = "How do I index my documents?"
FOLLOW_UP = "And how long does that take?"
HISTORY = [Message("user", FIRST), Message("assistant", "Run chatbot index sync docs/.")]


def never(messages: list[Message]) -> str:
    raise AssertionError("the chat model was asked to rewrite")


@pytest.mark.parametrize("policy, history, expected", [
    (QueryPolicy("off"), HISTORY, FOLLOW_UP),
    (QueryPolicy("last_turns", 1), HISTORY, FOLLOW_UP),
    (QueryPolicy("last_turns", 2), HISTORY, f"{FOLLOW_UP} {FIRST}"),
    (QueryPolicy("last_turns", 2), [], FOLLOW_UP),  # a first turn is searched as it is
    (QueryPolicy("rewrite", 2), [], FOLLOW_UP),
    (QueryPolicy("last_turns", 2), [Message("user", "a"), Message("assistant", "b"), *HISTORY],
     f"{FOLLOW_UP} {FIRST}"),
    (QueryPolicy("last_turns", 3), [Message("user", "a"), Message("assistant", "b"), *HISTORY],
     f"{FOLLOW_UP} {FIRST} a"),
])
def test_the_query_joins_the_recent_user_turns_newest_first(policy, history, expected) -> None:
    assert retrieval_query(policy, FOLLOW_UP, history, never) == expected


def test_an_empty_earlier_turn_gives_its_place_and_a_long_one_is_cut() -> None:
    """An API history may hold an empty user turn, which took the place of the turn before
    it; and a pasted 35k-character turn made the whole BM25 query about itself."""
    empty_last = [*HISTORY, Message("user", " "), Message("assistant", "?")]
    assert retrieval_query(QueryPolicy("last_turns", 2), FOLLOW_UP, empty_last,
                           never) == f"{FOLLOW_UP} {FIRST}"
    only_empty = [Message("user", ""), Message("assistant", "?")]
    assert retrieval_query(QueryPolicy("rewrite", 2), FOLLOW_UP, only_empty, never) == FOLLOW_UP
    assert FIRST in rewrite_messages(FOLLOW_UP, empty_last, 2)[-1].content
    pasted = [Message("user", "word " * 7000), Message("assistant", "ok")]
    query = retrieval_query(QueryPolicy("last_turns", 2), FOLLOW_UP, pasted, never)
    assert query.startswith(FOLLOW_UP) and len(query) <= len(FOLLOW_UP) + 1 + USER_CHARS + 4


def test_rewrite_asks_the_model_with_examples_and_takes_its_first_line() -> None:
    asked = []

    def rewrite(messages: list[Message]) -> str:
        asked.append(messages)
        return '\n"How long does indexing documents take?"\nmore text'

    query = retrieval_query(QueryPolicy("rewrite", 2), FOLLOW_UP, HISTORY, rewrite)
    assert query == "How long does indexing documents take?"
    messages = asked[0]
    assert messages[0] == Message("system", REWRITE_SYSTEM)
    assert [m.role for m in messages[1:]] == ["user", "assistant"] * 3 + ["user"]
    assert messages[-1].content == (f"Conversation:\nUser: {FIRST}\nAssistant: Run chatbot "
                                    f"index sync docs/.\n\nLast message: {FOLLOW_UP}\n\n"
                                    "Standalone question:")


def test_rewrite_shows_the_recent_turns_only_and_cuts_long_answers() -> None:
    history = [Message("user", "old question"), Message("assistant", "old answer"),
               Message("user", FIRST), Message("assistant", "word " * 200)]
    last = rewrite_messages(FOLLOW_UP, history, turns=2)[-1].content
    assert "old" not in last and FIRST in last and last.count("word") < 70 and " ..." in last


def test_the_rewrite_prompt_stays_short_whatever_the_history() -> None:
    """It is sent beside the answer's own prompt budget: a pasted page must not reach it."""
    asked = []
    history = [Message("user", "How do I renew my passport? " + "Explain every step. " * 4000),
               Message("assistant", "Apply online.")]
    query = retrieval_query(QueryPolicy("rewrite", 2), FOLLOW_UP, history,
                            lambda messages: asked.append(messages) or "Renewal cost?")
    assert query == "Renewal cost?" and len(asked[-1][-1].content) < 800
    pasted = "Does this log mean the sync failed? " + "ERROR line " * 500
    assert retrieval_query(QueryPolicy("rewrite", 2), pasted, history,
                           lambda messages: asked.append(messages) or "x") == pasted
    assert len(asked) == 1  # a message that long stands alone: no model call


@pytest.mark.parametrize("copied", ["How much does renewing a passport cost?",
                                    "can I get my deposit back from my landlord?"])
def test_a_rewrite_that_repeats_a_worked_example_falls_back_to_the_recent_turns(copied) -> None:
    """A small model often answers with an example's question: searching for passports would
    find nothing the conversation is about."""
    query = retrieval_query(QueryPolicy("rewrite", 2), FOLLOW_UP, HISTORY, lambda m: copied)
    assert query == f"{FOLLOW_UP} {FIRST}"


@pytest.mark.parametrize("text, expected", [
    ("Standalone question: How long does indexing take?", "How long does indexing take?"),
    ("  \n", FOLLOW_UP), ('"Is it free?"', "Is it free?")])
def test_standalone_takes_a_clean_line_or_keeps_the_question(text, expected) -> None:
    assert standalone(text, FOLLOW_UP) == expected


class RewritingEcho:
    """The echo generator, plus a fixed standalone question when asked to rewrite."""

    def __init__(self, echo) -> None:
        self.echo = echo
        self.rewrites = 0

    def __getattr__(self, name: str):
        return getattr(self.echo, name)

    def stream(self, messages, settings: GenerationSettings, adapter=None,
               cancel=None) -> Iterator[str]:
        if messages[0].content == REWRITE_SYSTEM:
            self.rewrites += 1
            yield from ["How long does ", "indexing take?\n", "ignored"]
            return
        yield from self.echo.stream(messages, settings, adapter, cancel)


def engine_with(generator, searched: list[str], tmp_path, mode: str) -> Engine:
    def search(query: str, k: int) -> list[Hit]:
        searched.append(query)
        return [Hit(Chunk("c1", "docs/indexing.md", "Sync takes seconds.", "", "h"), 0.9, 1)]

    return Engine({"prompt": Variant("prompt", "base", "rag", True),
                   "plain": Variant("plain", "base", "plain", False)},
                  lambda model: generator, search=search,
                  log=ConversationLog(tmp_path / "logs.sqlite"),
                  settings=GenerationSettings(max_new_tokens=40),
                  retrieval=RetrievalPolicy(query=QueryPolicy(mode, 2)))


@pytest.mark.parametrize("mode, expected", [
    ("last_turns", f"{FOLLOW_UP} {FIRST}"), ("rewrite", "How long does indexing take?")])
def test_the_engine_searches_with_the_earlier_turn_and_logs_it(echo, tmp_path, mode,
                                                               expected) -> None:
    searched: list[str] = []
    generator = RewritingEcho(echo)
    engine = engine_with(generator, searched, tmp_path, mode)
    first = engine.answer("s", FIRST, "prompt").result()
    reply = engine.answer("s", FOLLOW_UP, "prompt", history=[
        Message("user", FIRST), Message("assistant", first.text)]).result()
    assert searched == [FIRST, expected] and reply.retrieval_query == expected
    assert reply.text == FOLLOW_UP  # the answer is to the message as the user wrote it
    assert reply.messages[-1].content.endswith(f"Question: {FOLLOW_UP}")
    assert generator.rewrites == (mode == "rewrite")
    assert reply.timings["query_ms"] >= 0 and reply.as_dict()["retrieval_query"] == expected
    turns = engine.log.conversation("s").turns
    assert [t.settings.get("retrieval_query") for t in turns] == [None, FIRST, None, expected]


def test_an_answer_without_retrieval_has_no_query(echo, tmp_path) -> None:
    searched: list[str] = []
    engine = engine_with(RewritingEcho(echo), searched, tmp_path, "rewrite")
    reply = engine.answer("s", FOLLOW_UP, "plain", history=HISTORY).result()
    assert searched == [] and reply.retrieval_query is None


def test_the_prompt_panel_shows_the_query(echo, tmp_path) -> None:
    from app.ui.chat import ChatActions, new_state

    engine = engine_with(RewritingEcho(echo), [], tmp_path, "last_turns")
    actions, state = ChatActions(engine), new_state()
    list(actions.respond(FIRST, state, "prompt"))
    *_, (_, _, _, sources, _, _) = actions.respond("Is it <fast>?", state, "prompt")
    assert f"searched: <i>Is it &lt;fast&gt;? {FIRST}</i>" in sources
    plain = list(actions.respond("hello", state, "plain"))[-1][3]
    assert "searched:" not in plain
