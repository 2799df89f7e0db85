"""uvicorn's server, ending the responses still open when it is told to stop.

At Ctrl-C or SIGTERM uvicorn waits for open responses and then cuts them off, printing a
traceback: a streamed answer would just break off, and every open web page holds a heartbeat
stream that never ends. This server ends the heartbeats at once and gives running answers
``ANSWER_GRACE_S`` to finish, then stops them (each is logged as interrupted), so every reader
is told the server is shutting down (``app/api.py``, ``app/ui/chat.py``).

A second Ctrl-C stops the answers at once, without their grace. uvicorn's own forced exit
would cancel the open responses mid-write (a traceback each) and skip the shutdown that logs
the answers and checkpoints the log; here they still end as at the first Ctrl-C, only sooner.
"""

from __future__ import annotations

import asyncio
import signal
import socket
from collections.abc import Callable
from types import FrameType

import click
import uvicorn

from chatbot.engine import Engine

ANSWER_GRACE_S = 4
"""How long answers still running at shutdown get to finish before they are stopped."""
ENDING_S = 5
"""How long stopped answers then get to end their responses before uvicorn cuts them off."""
STOPPING_NOW = "stopping now: the answers still running end here, logged as interrupted"
"""What a second Ctrl-C prints."""


class StoppingServer(uvicorn.Server):
    def __init__(self, engine: Engine, end_heartbeats: Callable[[], None],
                 config: uvicorn.Config) -> None:
        config.timeout_graceful_shutdown = ANSWER_GRACE_S + ENDING_S
        super().__init__(config)
        self.engine, self.end_heartbeats = engine, end_heartbeats
        self._no_grace = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()  # for the signal handler to reach
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """A Ctrl-C once stopping ends the answers' grace instead of forcing uvicorn's exit;
        it is not recorded, so the process ends as after one Ctrl-C ("stopped", exit status 0)."""
        if self.should_exit and sig == signal.SIGINT and self._loop is not None:
            self._loop.call_soon_threadsafe(self._end_grace)  # printing waits for the loop
            return
        super().handle_exit(sig, frame)

    def _end_grace(self) -> None:
        if not self._no_grace.is_set():
            click.echo(STOPPING_NOW, err=True)
            self._no_grace.set()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        async def stop_answers_late() -> None:
            try:
                await asyncio.wait_for(self._no_grace.wait(), ANSWER_GRACE_S)
            except TimeoutError:
                pass
            await asyncio.to_thread(self.engine.stop_all)

        self.end_heartbeats()  # on the event loop: the heartbeats wait on an asyncio.Event
        stopping = asyncio.create_task(stop_answers_late())
        try:
            await super().shutdown(sockets)
        finally:
            stopping.cancel()
