"""A remote server as the bot's variants share it: its places for requests in flight
(``max_concurrency``), and how long an answer waits for one (``queue_timeout_s``)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from chatbot.errors import BackendError

SLOT_POLL_S = 0.05
"""How often a request waiting for a place looks whether its answer was cancelled."""


@dataclass
class RemoteBackend:
    """A named server; its semaphore is shared by every model served from it."""

    name: str
    base_url: str
    api_key_env: str | None = None
    timeout_s: float = 120.0
    max_concurrency: int = 16
    queue_timeout_s: float = 120.0
    slots: threading.BoundedSemaphore = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.slots = threading.BoundedSemaphore(self.max_concurrency)

    def take_slot(self, cancel: threading.Event) -> bool:
        """Wait for a place (``False``: cancelled meanwhile). Answers that hold every place
        (a server that hangs holds them for good) fail a request after ``queue_timeout_s`` as
        busy, rather than keep it, and its caller, waiting without end."""
        deadline = time.monotonic() + self.queue_timeout_s
        while not self.slots.acquire(timeout=max(0.0, min(SLOT_POLL_S,
                                                          deadline - time.monotonic()))):
            if cancel.is_set():
                return False
            if time.monotonic() >= deadline:
                setting = f"backends.{self.name}"
                raise BackendError(
                    f"backend {self.name!r} ({self.base_url}) had no free place for "
                    f"{self.queue_timeout_s:g} s: all {self.max_concurrency} of its places "
                    f"({setting}.max_concurrency) were taken by answers under way; ask again "
                    "later, "
                    f"or raise {setting}.max_concurrency if the server has room, or "
                    f"{setting}.queue_timeout_s", self.base_url, busy=True)
        return True
