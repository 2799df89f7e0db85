"""Logged conversations written as serving writes them, for the data and review tests."""

from __future__ import annotations

from pathlib import Path

from chatbot.logs import ConversationLog
from chatbot.prompts import build_messages, load_template
from chatbot.types import Message


def log_exchanges(log: ConversationLog, session: str, exchanges, comment: str | None = None,
                  variant: str = "prompt", attribution: dict | None = None,
                  hits=()) -> list[int]:
    """Log (question, answer, rating) exchanges of one session with their exact prompts, each
    question sent with ``hits``; a thumbs-down gets ``comment``. Returns the answers' turn
    ids."""
    log.ensure_session(session, variant)
    template, history, turn_ids = load_template("rag"), [], []
    for question, answer, rating in exchanges:
        log.add_turn(session, "user", question)
        sent = build_messages(template, question, hits, history=history)
        turn = log.add_turn(session, "assistant", "", variant=variant,
                            messages=[m.as_dict() for m in sent], status="pending")
        log.finish_turn(turn, answer, {}, "complete", attribution)
        if rating:
            log.add_feedback(turn, rating, comment if rating == -1 else None)
        history += [Message("user", question), Message("assistant", answer)]
        turn_ids.append(turn)
    return turn_ids


def log_with_a_session(path: Path, link: Path) -> bytes:
    """A closed log at ``path`` with one session (``web-a``), reached through the symlink
    ``link`` too; its bytes, to show a refused command left it as it was."""
    log = ConversationLog(path)
    log.ensure_session("web-a", "prompt")
    log.close()
    link.symlink_to(path)
    return path.read_bytes()
