"""A backend address that takes no connections at all (a wrong host, a firewall that drops
them) is told apart from a server that is connected to but slow: raising ``timeout_s`` is no
fix for the first."""

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
