"""One remote answer's connection, caught as it opens, so that a cancel (a closed tab, a client
that left) can hang up on the server at any moment: before its reply begins (a model still
loading, a long prompt) as while it streams or stalls."""

from __future__ import annotations

import socket
import threading

CANCEL_POLL_S = 0.1
"""How often an answer's watcher looks for a cancel (``hang_up_on_cancel``)."""


class AnswerConnection:
    """The socket of one answer's request, caught as it connects (httpcore's ``trace``
    extension), for ``hang_up_on_cancel``."""

    def __init__(self) -> None:
        self.socket: socket.socket | None = None

    def trace(self, event: str, info: dict) -> None:
        if event == "connection.connect_tcp.complete":
            self.socket = info["return_value"].get_extra_info("socket")


def hang_up_on_cancel(connection: AnswerConnection, cancel: threading.Event,
                      done: threading.Event) -> None:
    """Shut the answer's connection once it is cancelled, so a read waiting on a server that
    sends nothing (a stall, a long prefill, a model still loading, before or after its reply
    began) ends at once: the server hears the hang-up and stops, and the backend's slot and the
    turn are freed then, not when the server next speaks or ``timeout_s`` runs out. A retry's
    new connection is shut too."""
    shut = None
    while not done.wait(CANCEL_POLL_S):
        current = connection.socket
        if cancel.is_set() and current is not None and current is not shut:
            try:
                current.shutdown(socket.SHUT_RDWR)
            except OSError:  # closed meanwhile: nothing left to wake
                pass
            shut = current
