import sqlite3

import pytest

from chatbot.errors import InputError
from chatbot.logs import ConversationLog
from chatbot.migrations import MIGRATIONS, migrate


def test_blank_database_gets_every_migration_once(tmp_path) -> None:
    db = sqlite3.connect(tmp_path / "x.sqlite")
    assert migrate(db) == [m.__name__ for m in MIGRATIONS]
    assert migrate(db) == []
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"sessions", "turns", "feedback", "_migrations"} <= tables


def test_log_is_in_wal_mode_and_survives_reopening(tmp_path) -> None:
    log = ConversationLog(tmp_path / "logs.sqlite")
    log.ensure_session("s1", "prompt")
    log.add_turn("s1", "user", "hi")
    turn = log.add_turn("s1", "assistant", "", variant="prompt", status="pending")
    log.finish_turn(turn, "hello", {"total_ms": 5}, "complete")
    log.close()
    reopened = ConversationLog(tmp_path / "logs.sqlite")
    assert reopened._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    turns = reopened.conversation("s1").turns
    assert [(t.role, t.text, t.status) for t in turns] == [
        ("user", "hi", "complete"), ("assistant", "hello", "complete")]
    assert turns[1].timings == {"total_ms": 5}


def test_feedback_latest_wins_and_is_validated(tmp_path) -> None:
    log = ConversationLog(tmp_path / "logs.sqlite")
    log.ensure_session("s1")
    user = log.add_turn("s1", "user", "hi")
    answer = log.add_turn("s1", "assistant", "hello")
    log.add_feedback(answer, -1, "wrong")
    log.add_feedback(answer, 1)
    turn = log.conversation("s1").turns[1]
    assert (turn.rating, turn.comment) == (1, None)
    with pytest.raises(InputError, match="rating must be 1"):
        log.add_feedback(answer, 5)
    with pytest.raises(InputError, match=f"no answer with turn id {user}"):
        log.add_feedback(user, 1)


def test_unknown_session_points_to_logs_list(tmp_path) -> None:
    with pytest.raises(InputError, match="`chatbot logs list` shows the sessions"):
        ConversationLog(tmp_path / "logs.sqlite").conversation("nope")
