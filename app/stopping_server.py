"""uvicorn's server, ending the responses still open when it is told to stop.

At Ctrl-C or SIGTERM uvicorn waits for open responses and then cuts them off, printing a
traceback: a streamed answer would just break off, and every open web page holds a heartbeat
stream that never ends. This server ends the heartbeats at once and gives running answers
``ANSWER_GRACE_S`` to finish, then stops them (each is logged as interrupted), so every reader
is told the server is shutting down (``app/api.py``, ``app/ui/chat.py``).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

import uvicorn

from chatbot.engine import Engine

ANSWER_GRACE_S = 4
"""How long answers still running at shutdown get to finish before they are stopped."""
ENDING_S = 5
"""How long stopped answers then get to end their responses before uvicorn cuts them off."""


class StoppingServer(uvicorn.Server):
    def __init__(self, engine: Engine, end_heartbeats: Callable[[], None],
                 config: uvicorn.Config) -> None:
        config.timeout_graceful_shutdown = ANSWER_GRACE_S + ENDING_S
        super().__init__(config)
        self.engine, self.end_heartbeats = engine, end_heartbeats

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        async def stop_answers_late() -> None:
            await asyncio.sleep(ANSWER_GRACE_S)
            await asyncio.to_thread(self.engine.stop_all)

        self.end_heartbeats()  # on the event loop: the heartbeats wait on an asyncio.Event
        stopping = asyncio.create_task(stop_answers_late())
        try:
            await super().shutdown(sockets)
        finally:
            stopping.cancel()
