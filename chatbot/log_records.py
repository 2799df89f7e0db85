"""What the conversation log hands back: a turn, a correction, an answer to review, a
conversation (``chatbot.logs.ConversationLog`` reads them; the surfaces and training use them)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class LoggedTurn:
    id: int
    position: int
    role: str
    text: str
    variant: str | None
    status: str
    created_at: str
    messages: list[dict] = field(default_factory=list)
    hits: list[dict] = field(default_factory=list)
    timings: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    """What the answer was made with: generation settings and ``retrieval_query``."""
    rating: int | None = None
    """The latest feedback on this turn: +1, -1 or None."""
    comment: str | None = None
    attribution: dict | None = None
    """``Attribution.as_dict()`` of a finished answer; ``None`` with attribution off."""
    correction: str | None = None
    """The latest correction of this answer (``text`` stays as generated); None: uncorrected."""
    approved: bool = False
    """A reviewer found the answer fine as it is."""
    error: str | None = None
    """Why an answer ended in ``error``: the message its user was shown."""


@dataclass(frozen=True)
class Correction:
    id: int
    turn_id: int
    text: str
    author: str | None
    created_at: str


@dataclass(frozen=True)
class ReviewItem:
    """An answer worth a reviewer's look, with the question it answered."""

    session_id: str
    question: str
    answer: LoggedTurn
    reasons: tuple[str, ...]
    """``thumbs down``, ``flagged``, ``withheld`` or ``low support``."""


@dataclass(frozen=True)
class LoggedConversation:
    session_id: str
    created_at: str
    turns: list[LoggedTurn]
