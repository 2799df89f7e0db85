"""A backend address that takes no connections at all (a wrong host, a firewall that drops
them) is told apart from a server that is connected to but slow: raising ``timeout_s`` is no
fix for the first. A backend out of reach fails an answer logged as failed, whichever request
met it first."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from chatbot.errors import ModelError
from tests.test_remote import bot_engine, write_bot_config


@contextmanager
def dropping_connections() -> Iterator[str]:
    """The /v1 URL of an address whose connection attempts go unanswered: a listening socket
    whose backlog is full, so the kernel drops further SYNs as a firewall would."""
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen(0)
        port = listening.getsockname()[1]
        queued = []
        for _ in range(3):
            client = socket.socket()
            client.setblocking(False)
            client.connect_ex(("127.0.0.1", port))
            queued.append(client)
        try:
            yield f"http://127.0.0.1:{port}/v1"
        finally:
            for client in queued:
                client.close()


def test_an_address_that_takes_no_connection_is_not_called_slow(tmp_path, monkeypatch) -> None:
    with dropping_connections() as url:
        engine = bot_engine(write_bot_config(tmp_path, url, timeout_s=1), monkeypatch)
        with pytest.raises(ModelError, match=r"^backend 'remote' \(http://127.0.0.1:\d+/v1\) took "
                                             r"no connection within 1 s; check that the server "
                                             r"is running and backends.remote.base_url"):
            engine.answer("s1", "hello", "prompt").result()
    assert engine.log.conversation("s1").turns[-1].status == "error"


def test_a_follow_up_whose_rewrite_the_backend_fails_is_logged_as_failed(tmp_path,
                                                                         monkeypatch) -> None:
    """With retrieval.query.mode: rewrite, the backend writes a follow-up's search query
    before the answer: a backend down then failed the answer with nothing in the log."""
    import yaml

    from chatbot.types import Message
    from tests.serving import free_port

    config = write_bot_config(tmp_path, f"http://127.0.0.1:{free_port()}/v1")
    settings = yaml.safe_load(config.read_text())
    settings["retrieval"] = {"query": {"mode": "rewrite", "turns": 2}}
    config.write_text(yaml.safe_dump(settings))
    engine = bot_engine(config, monkeypatch)
    history = [Message("user", "How do I index?"), Message("assistant", "Sync the folder.")]
    with pytest.raises(ModelError, match=r"^backend 'remote' .* is unreachable") as caught:
        engine.answer("s1", "How long does that take?", "prompt", history=history).result()
    question, answer = engine.log.conversation("s1").turns
    assert (question.text, question.status) == ("How long does that take?", "complete")
    assert (answer.text, answer.status, answer.error) == ("", "error", str(caught.value))


@pytest.mark.parametrize("status", [301, 302])
def test_a_base_url_that_redirects_is_named_with_where_it_redirects(tmp_path, monkeypatch,
                                                                    status) -> None:
    """An http:// base_url of a server behind https (nginx's ``return 301 https://...``): the
    redirect turns the bot's POST into a GET, which was told as "failed (HTTP 405: Method Not
    Allowed); check the server's log"."""
    import re

    from tests.serving import QuietHandler, http_server

    class Redirecting(QuietHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.reply(status, b"<html>Moved</html>", "text/html",
                       {"Location": f"/secure{self.path}"})

        def do_GET(self) -> None:
            if self.path.startswith("/secure/"):
                self.reply(405, b'{"detail": "Method Not Allowed"}', "application/json")
            else:
                self.reply(status, headers={"Location": f"/secure{self.path}"})

    with http_server(Redirecting) as url:
        engine = bot_engine(write_bot_config(tmp_path, url), monkeypatch)
        url, moved_to = re.escape(url), re.escape(url.replace("/v1", "/secure/v1"))
        with pytest.raises(ModelError, match=rf"^backend 'remote' \({url}, which redirects to "
                                             rf"{moved_to}\) refused the request the redirect "
                                             r"sent on \(HTTP 405: Method Not Allowed\); set "
                                             r"backends.remote.base_url to the URL it "
                                             r"redirects to$") as caught:
            engine.answer("s1", "hello", "prompt").result()
    assert caught.value.public == ("backend 'remote' refused the request the redirect sent on "
                                   "(HTTP 405: Method Not Allowed); set backends.remote."
                                   "base_url to the URL it redirects to")
