"""Erasing conversations from the log, as a person may ask (``chatbot logs delete``): each
session's turns with their ratings, corrections and approvals, its A/B assignment, and the
arena battles and votes its answers took part in. Deleted rows are overwritten on disk
(SQLite's ``secure_delete``, then the write-ahead log is emptied), not just unlinked.

Datasets and exports made before keep their own copies; the command says to rebuild them.

    chatbot logs delete --containing dana.k@example.com
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from chatbot.migrations import open_log_database


@dataclass(frozen=True)
class Erased:
    sessions: int
    turns: int
    ratings: int
    corrections: int
    battles: int


def sessions_mentioning(path: Path, text: str) -> list[str]:
    """Sessions where someone wrote ``text`` (ignoring case): in a message, a rating's comment
    or a correction; not in the sources retrieved for a question. Matched in Python: SQLite's
    LIKE ignores the case of ASCII letters only, so ``ÉLODIE`` would miss ``élodie``."""
    wanted = text.casefold()
    db = open_log_database(path)
    db.create_function("mentions", 1, lambda value: value is not None
                       and wanted in value.casefold(), deterministic=True)
    try:
        rows = db.execute(
            "SELECT DISTINCT t.session_id FROM turns t "
            "LEFT JOIN feedback f ON f.turn_id = t.id LEFT JOIN corrections c ON c.turn_id = t.id "
            "WHERE mentions(t.text) OR mentions(f.comment) OR mentions(c.text) "
            "ORDER BY t.session_id")
        return [row[0] for row in rows]
    finally:
        db.close()


def erase_sessions(path: Path, session_ids: list[str]) -> Erased:
    """Delete ``session_ids`` and everything recorded about them, in one transaction."""
    db = open_log_database(path)
    try:
        db.execute("PRAGMA secure_delete = ON")
        marks = ",".join("?" * len(session_ids))
        turns = f"SELECT id FROM turns WHERE session_id IN ({marks})"
        battles = (f"SELECT id FROM battles WHERE session_id IN ({marks}) "
                   f"OR turn_a IN ({turns}) OR turn_b IN ({turns})")
        ids, battle_ids = tuple(session_ids), tuple(session_ids) * 3
        with db:
            db.execute(f"DELETE FROM votes WHERE battle_id IN ({battles})", battle_ids)
            erased_battles = db.execute(f"DELETE FROM battles WHERE id IN ({battles})",
                                        battle_ids).rowcount
            ratings = db.execute(f"DELETE FROM feedback WHERE turn_id IN ({turns})", ids).rowcount
            corrections = db.execute(f"DELETE FROM corrections WHERE turn_id IN ({turns})",
                                     ids).rowcount
            db.execute(f"DELETE FROM approvals WHERE turn_id IN ({turns})", ids)
            erased_turns = db.execute(f"DELETE FROM turns WHERE session_id IN ({marks})",
                                      ids).rowcount
            db.execute(f"DELETE FROM assignments WHERE session_id IN ({marks})", ids)
            sessions = db.execute(f"DELETE FROM sessions WHERE id IN ({marks})", ids).rowcount
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the overwritten pages into the file
        return Erased(sessions, erased_turns, ratings, corrections, erased_battles)
    finally:
        db.close()
