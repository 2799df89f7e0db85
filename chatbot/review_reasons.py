"""Which answers the Review tab lists, and why (``ConversationLog.review_queue``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chatbot.logs import LoggedTurn


def review_reasons(answer: LoggedTurn, min_support: float) -> tuple[str, ...]:
    """Why ``answer`` waits for a reviewer: a thumbs-down, attribution's flag or withholding, or
    a support score under ``min_support``."""
    found = ["thumbs down"] if answer.rating == -1 else []
    attribution = answer.attribution or {}
    if attribution.get("action") in ("flagged", "withheld"):
        found.append(attribution["action"])
    elif attribution.get("score") is not None and attribution["score"] < min_support:
        found.append("low support")
    return tuple(found)


def unreviewed(turn: str) -> str:
    """The SQL condition that the answer ``turn`` names has no correction and no approval."""
    return (f"NOT EXISTS (SELECT 1 FROM corrections c WHERE c.turn_id = {turn}) "
            f"AND NOT EXISTS (SELECT 1 FROM approvals a WHERE a.turn_id = {turn})")
