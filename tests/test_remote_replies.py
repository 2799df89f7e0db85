"""What a remote server's reply holds, told apart from a server that failed: an answer that
ended without any text is an error naming the backend, not an empty answer logged complete; a
refusal in words other than OpenAI's is told in the server's words."""

from __future__ import annotations

import pytest

from chatbot.errors import ModelError
from tests.serving import QuietHandler, http_server
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


@pytest.mark.parametrize("status, kind, body, said", [
    (500, "text/html", b"<html><body><h1>Oops</h1></body></html>", "Internal Server Error"),
    (500, "text/plain", b"model worker crashed\nTraceback ...", "model worker crashed"),
    (422, "application/json", b'{"error": "Input validation error: top_p must be < 1", '
                              b'"error_type": "validation"}',
     "Input validation error: top_p must be < 1"),
    (400, "application/json", b'{"detail": "Unsupported parameter: stop"}',
     "Unsupported parameter: stop")])
def test_a_server_error_is_told_in_the_servers_words(tmp_path, monkeypatch, status, kind, body,
                                                     said) -> None:
    """A plain-text or HTML error page, and the error shapes of servers other than OpenAI's
    (Text Generation Inference's, FastAPI's), were told as "HTTP 500: Error code: 500"."""
    class Failing(QuietHandler):
        def do_POST(self) -> None:
            if self.asked_to_chat():
                self.reply(status, body, kind)

    with http_server(Failing) as url:
        engine = bot_engine(write_bot_config(tmp_path, url), monkeypatch)
        with pytest.raises(ModelError, match=rf"^backend 'remote' \(http://127.0.0.1:\d+/v1\) "
                                             rf"failed \(HTTP {status}: {said}\); check the "
                                             r"server's log$"):
            engine.answer("s1", "hello", "prompt").result()


@pytest.mark.parametrize("finish", ["abort", "error"])
def test_an_answer_the_server_gave_up_on_is_an_error_not_a_complete_answer(
        tmp_path, monkeypatch, finish) -> None:
    """vLLM ends an answer its engine aborted or failed with that finish_reason: the text so
    far was shown and logged as a complete answer."""
    answer = events(("Hello there ", None), ("", finish))
    with server_answering("text/event-stream", answer) as url:
        engine = bot_engine(write_bot_config(tmp_path, url), monkeypatch)
        shown = []
        with pytest.raises(ModelError, match=rf"^backend 'remote' \(http://127.0.0.1:\d+/v1\) "
                                             rf"gave up on the answer after 12 characters "
                                             rf"\(finish_reason '{finish}'\); check the "
                                             r"server's log$"):
            for piece in engine.answer("s1", "hello", "prompt"):
                shown.append(piece)
    turn = engine.log.conversation("s1").turns[-1]
    assert turn.status == "error" and turn.text == "".join(shown)
