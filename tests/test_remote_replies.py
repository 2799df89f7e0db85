"""What a remote server's reply holds, told apart from a server that failed: an answer that
ended without any text is an error naming the backend, not an empty answer logged complete."""

from __future__ import annotations

import pytest

from chatbot.errors import ModelError
from tests.test_remote import bot_engine, events, server_answering, write_bot_config


@pytest.mark.parametrize("finish, said", [
    ("stop", r"ended the answer without any text \(finish_reason 'stop'\); check the server's "
             r"log, and that model 'echo' is a chat model"),
    ("length", r"spent all 8 new tokens without any answer text \(finish_reason 'length'\); "
               r"allow more new tokens \(a reasoning model spends them thinking\)")])
def test_an_answer_without_text_is_an_error_naming_the_backend(tmp_path, monkeypatch, finish,
                                                               said) -> None:
    """A server that ends the answer at once (or spends every token on its hidden reasoning)
    gave the user an empty bubble and the log an empty answer marked complete."""
    with server_answering("text/event-stream", events((" \n", None), ("", finish))) as url:
        engine = bot_engine(write_bot_config(tmp_path, url), monkeypatch)
        with pytest.raises(ModelError, match=rf"^backend 'remote' \(http://127.0.0.1:\d+/v1\) "
                                             rf"{said}$"):
            engine.answer("s1", "hello", "prompt").result()
    turn = engine.log.conversation("s1").turns[-1]
    assert turn.status == "error" and turn.text == ""
