"""One browser page's conversation as the Chat tab keeps it, and the data of a click on it.

The page keeps its own conversation and passes it to the engine as history (``app/ui/chat.py``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import gradio as gr

from chatbot.types import Message, Reply


@dataclass
class ShownAnswer:
    question: str
    reply: Reply
    correction: str | None = None
    """The text a person put in its place (saved with the turn); shown and sent as history."""
    feedback: str | None = None
    """``Like`` or ``Dislike`` while its rating is in the log: the thumb the page keeps lit."""

    @property
    def text(self) -> str:
        return self.reply.text if self.correction is None else self.correction


@dataclass
class ChatState:
    """One browser session's conversation as the page shows it."""

    session_id: str
    answers: list[ShownAnswer] = field(default_factory=list)
    rated: tuple[int, int] | None = None
    """(turn id, rating) of the last thumbs click, for the optional comment."""
    unanswered: str | None = None
    """The last question whose answer failed (a model error): Regenerate asks it again."""
    answering: bool = False
    """An answer is being written: the page's Send button (or Regenerate) works meanwhile,
    and a second answer written into the conversation at once would take the first's place."""

    def history(self, answers: int | None = None) -> list[Message]:
        """The conversation as the model is sent it: the first ``answers`` turns (all)."""
        turns = []
        for answer in self.answers[:answers]:
            turns += [Message("user", answer.question), Message("assistant", answer.text)]
        return turns


def new_state() -> ChatState:
    """A fresh conversation with its own session id (one per browser page load)."""
    return ChatState(f"web-{uuid.uuid4().hex[:12]}")


class ChatEvent(gr.EventData):
    """A click on a chat message (a thumb, a selection, an edit) as the event's data says it.

    Gradio's own ``LikeData``, ``SelectData`` and ``EditData`` read keys the browser always
    sends, so a Gradio API call without them (``/gradio_api/call/rate`` sends no event data at
    all) failed inside Gradio with Python's ``'NoneType' object is not subscriptable``. Here a
    key left out is ``None``: an index that names no message, a rating neither up nor down,
    which the event functions ignore."""

    def __init__(self, target, data) -> None:
        super().__init__(target, data)
        data = data if isinstance(data, dict) else {}
        self.index = data.get("index")
        self.value = data.get("value")
        self.liked = data.get("liked")
