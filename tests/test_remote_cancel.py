"""A cancelled answer (a closed tab, a Ctrl-C, a server shutting down) ends at once even while
the bot is still asking the remote about its model, before the answer is asked for: its
``/v1/models`` card (the context window) or its ``/tokenize`` (the prompt's tokens).

    .venv/bin/python -m pytest tests/test_remote_cancel.py -q -n 0
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.serving import QuietHandler, http_server
from tests.test_remote import bot_engine, events, write_bot_config


class Remote:
    """A remote whose first request to ``hangs_at`` sends nothing until it is released,
    and that answers every later one; it counts the requests each path got."""

    def __init__(self, hangs_at: str) -> None:
        self.hangs_at = hangs_at
        self.asked, self.hung_up, self.release = (threading.Event(), threading.Event(),
                                                  threading.Event())
        self.requests: dict[str, int] = {}

    def handler(self) -> type[QuietHandler]:
        remote = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                self._answer()

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                self._answer()

            def _answer(self) -> None:
                path = self.path.removeprefix("/v1")
                remote.requests[path] = remote.requests.get(path, 0) + 1
                if path == remote.hangs_at and remote.requests[path] == 1:
                    remote.asked.set()
                    self.connection.settimeout(30)
                    try:
                        if self.rfile.read(1) == b"":  # the bot closed the request
                            remote.hung_up.set()
                    except OSError:
                        pass
                    remote.release.wait(60)
                    return
                if path == "/models":
                    self.reply(200, json.dumps(
                        {"object": "list", "data": [{"id": "echo", "max_model_len": 4096}]}
                    ).encode(), "application/json")
                elif path == "/tokenize":
                    self.reply(200, json.dumps({"count": 10}).encode(), "application/json")
                else:
                    self.reply(200, events(("Hello there", "stop")), "text/event-stream")

        return Handler


@contextmanager
def serving(remote: Remote) -> Iterator[str]:
    with http_server(remote.handler()) as url:
        try:
            yield url
        finally:
            remote.release.set()


@pytest.mark.parametrize("hangs_at", ["/models", "/tokenize"])
def test_a_cancelled_answer_hangs_up_on_a_question_about_the_model(tmp_path, monkeypatch,
                                                                   caplog, hangs_at) -> None:
    """The question is hung up on, the turn is logged as interrupted, and the cancel is not
    taken for a server that did not answer: the next answer asks again."""
    remote = Remote(hangs_at)
    with serving(remote) as url, caplog.at_level(logging.WARNING):
        engine = bot_engine(write_bot_config(tmp_path, url, timeout_s=60), monkeypatch)
        stream = engine.answer("s1", "hello", "prompt")
        assert remote.asked.wait(30)
        stream.cancel()
        assert stream.wait(5) is not None, f"the answer still waits on {hangs_at}"
        assert remote.hung_up.wait(5), f"the bot left its {hangs_at} request open"
        assert engine.log.conversation("s1").turns[-1].status == "interrupted"
        remote.release.set()
        assert engine.answer("s2", "hello", "prompt").result().text == "Hello there"
    assert remote.requests[hangs_at] >= 2
    assert "did not answer" not in caplog.text


def test_a_cancelled_answer_does_not_wait_for_another_answers_question(tmp_path,
                                                                      monkeypatch) -> None:
    """Answers that start together wait for the first one's question about the model; one
    of them cancelled stops waiting at once, while the first still asks."""
    remote = Remote("/models")
    with serving(remote) as url:
        engine = bot_engine(write_bot_config(tmp_path, url, timeout_s=60), monkeypatch)
        asking = engine.answer("s1", "hello", "prompt")
        assert remote.asked.wait(30)
        waiting = engine.answer("s2", "hello", "prompt")
        waiting.cancel()
        assert waiting.wait(5) is not None, "the cancelled answer still waits for the other"
        assert asking.wait(0) is None and not remote.hung_up.is_set()
        remote.release.set()
        asking.cancel()
