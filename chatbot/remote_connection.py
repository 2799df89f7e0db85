"""The connections of one answer's requests to a remote server, caught as they open, so that a
cancel (a closed tab, a client that left, a Ctrl-C, a server shutting down) can hang up on the
server at any moment: while the bot asks about the model (its ``/v1/models`` card, its
``/tokenize``), before the answer's reply begins (a model still loading, a long prompt) and
while it streams or stalls.

An answer's thread runs inside ``hung_up_on_cancel(cancel)``; an HTTP client that has
``catch_connection`` as a request hook then has each of its requests from that thread hung up
on once ``cancel`` is set. Such a client must keep no connection alive between requests: a
reused connection opens no new socket to catch.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpx

CANCEL_POLL_S = 0.1
"""How often an answer's watcher looks for a cancel (``AnswerConnection.hang_up_on_cancel``)."""


class AnswerConnection:
    """The socket of an answer's latest request, caught as it connects (httpcore's ``trace``
    extension), and shut once the answer is cancelled; the watcher that shuts it starts with
    the answer's first request, so an answer that sends none (a local model) starts none."""

    def __init__(self, cancel: threading.Event) -> None:
        self.cancel = cancel
        self.socket: socket.socket | None = None
        self.done = threading.Event()
        self._watching = False

    def trace(self, event: str, info: dict) -> None:
        if event == "connection.connect_tcp.complete":
            self.socket = info["return_value"].get_extra_info("socket")

    def watch(self) -> None:
        """Start the watcher, once (only the answer's own thread calls this)."""
        if not self._watching:
            self._watching = True
            threading.Thread(target=self.hang_up_on_cancel, daemon=True,
                             name="cancel-watch").start()

    def hang_up_on_cancel(self) -> None:
        """Shut the answer's connection once it is cancelled, so a read waiting on a server
        that sends nothing (a stall, a long prefill, a model still loading, before or after its
        reply began) ends at once: the server hears the hang-up and stops, and the backend's
        slot and the turn are freed then, not when the server next speaks or a timeout runs
        out. A later request's new connection (a retry, the answer after a token count) is
        shut too."""
        shut = None
        while not self.done.wait(CANCEL_POLL_S):
            current = self.socket
            if self.cancel.is_set() and current is not None and current is not shut:
                try:
                    current.shutdown(socket.SHUT_RDWR)
                except OSError:  # closed meanwhile: nothing left to wake
                    pass
                shut = current


_thread = threading.local()
"""``answer``: the ``AnswerConnection`` of the answer this thread runs, if any."""


@contextmanager
def hung_up_on_cancel(cancel: threading.Event) -> Iterator[None]:
    """Inside, this thread's requests through clients with ``catch_connection`` are hung up on
    once ``cancel`` is set. Nested for the same ``cancel`` (an answer's stream inside the
    answer), the outer one goes on."""
    outer = getattr(_thread, "answer", None)
    if outer is not None and outer.cancel is cancel:
        yield
        return
    _thread.answer = connection = AnswerConnection(cancel)
    try:
        yield
    finally:
        connection.done.set()
        if getattr(_thread, "answer", None) is connection:  # not a stream closed elsewhere
            _thread.answer = outer


def catch_connection(request: httpx.Request) -> None:
    """An httpx request hook: has the request's connection caught as it opens when this
    thread runs an answer, so a cancel can shut it before the server replies."""
    connection = getattr(_thread, "answer", None)
    if connection is not None:
        request.extensions["trace"] = connection.trace
        connection.watch()


def answer_cancelled() -> bool:
    """Whether the answer this thread runs (inside ``hung_up_on_cancel``) is cancelled: a
    request of its that failed was then hung up on, which says nothing about the server."""
    connection = getattr(_thread, "answer", None)
    return connection is not None and connection.cancel.is_set()
