"""The Chat tab when an answer fails (a model that can't load, a backend that goes away): the
chat says so where the answer would be, and Regenerate asks the question again."""

import gradio as gr
import pytest

from chatbot.engine import Engine
from chatbot.errors import ModelError
from chatbot.logs import ConversationLog
from app.ui.chat import ChatActions, new_state
from conftest import EchoGenerator
from test_ui_chat import VARIANTS, drawn, passages, run

NOT_ANSWERED = "**Not answered:** {}. Regenerate asks the question again."


def test_a_failed_answer_says_so_in_the_chat_and_keeps_the_question(tmp_path) -> None:
    """The page raised the error over every part of the chat: 'Error' badges over the chat,
    the message box and the sources ('Answering...'), and the question vanished from view."""
    def broken(model: str):
        raise ModelError(f"model {model} can't be loaded; run `chatbot models prepare`")

    engine = Engine(VARIANTS, broken, log=ConversationLog(tmp_path / "logs.sqlite"))
    actions, state = ChatActions(engine), new_state()
    chat, state, box, sources, prompt, _ = run(actions.respond("hello", state, "prompt"))[-1]
    failed = NOT_ANSWERED.format("model base can't be loaded; run `chatbot models prepare`")
    assert drawn(chat) == [{"role": "user", "content": "hello"},
                           {"role": "assistant", "content": failed}]
    assert box == gr.update()  # a next question typed meanwhile stays in the box
    assert "Not answered" in sources and prompt is None
    assert state.answers == [] and state.unanswered == "hello"


class FailingEcho(EchoGenerator):
    """Echoes, but the next ``failures`` answers break off after their first word."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def stream(self, messages, settings, adapter=None, cancel=None):
        for number, word in enumerate(super().stream(messages, settings, adapter, cancel)):
            if number and self.failures:
                self.failures -= 1
                raise ModelError("the model server went away mid-answer")
            yield word


@pytest.fixture
def flaky(tmp_path) -> tuple[FailingEcho, Engine]:
    """A model that fails as often as its ``failures`` says, and an engine on it."""
    model = FailingEcho(failures=0)
    return model, Engine(VARIANTS, lambda name: model, search=passages,
                         log=ConversationLog(tmp_path / "logs.sqlite"))


def test_regenerate_after_a_failed_answer_asks_the_failed_question_again(flaky) -> None:
    model, engine = flaky
    actions, state = ChatActions(engine), new_state()
    run(actions.respond("good first answer", state, "plain"))
    model.failures = 1
    failed = drawn(run(actions.respond("second question here", state, "plain"))[-1][0])
    assert failed[2:] == [{"role": "user", "content": "second question here"}, {
        "role": "assistant", "content": NOT_ANSWERED.format("the model server went away "
                                                            "mid-answer")}]
    messages = drawn(run(actions.regenerate(state, "plain"))[-1][0])
    assert [m["content"] for m in messages] == ["good first answer", "good first answer",
                                                "second question here", "second question here"]
    assert state.unanswered is None


def test_a_failed_regenerate_keeps_the_answer_it_was_to_replace(flaky) -> None:
    model, engine = flaky
    actions, state = ChatActions(engine), new_state()
    run(actions.respond("one two", state, "plain"))
    run(actions.respond("three four", state, "plain"))
    model.failures = 1
    with pytest.warns(UserWarning, match="^Not answered: the model server went away mid-answer; "
                                         "the earlier answer is kept"):
        chat = run(actions.regenerate(state, "plain"))[-1][0]
    assert [m["content"] for m in drawn(chat)][-1] == "three four"  # shown again
    assert [a.reply.text.split() for a in state.answers] == [["one", "two"], ["three", "four"]]
    messages = drawn(run(actions.regenerate(state, "plain"))[-1][0])  # the same, asked again
    assert [m["content"] for m in messages if m["role"] == "user"] == ["one two", "three four"]
    assert len(state.answers) == 2
