import sqlite3

import pytest

from chatbot.errors import InputError
from chatbot.log_writer import WRITER
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


def test_opening_the_log_closes_only_answers_whose_writer_is_gone(tmp_path) -> None:
    import socket
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    log = ConversationLog(tmp_path / "logs.sqlite")
    log.ensure_session("s1")
    mine = log.add_turn("s1", "assistant", "", status="pending")  # this process: still writing
    orphan = log.add_turn("s1", "assistant", "", status="pending")
    old = log.add_turn("s1", "assistant", "", status="pending")
    log.save_partial(orphan, "half an ans")
    reused = log.add_turn("s1", "assistant", "", status="pending")
    host = socket.gethostname()
    log._db.execute("UPDATE turns SET writer = ? WHERE id = ?", (f"{host}:{dead}", orphan))
    log._db.execute("UPDATE turns SET writer = NULL WHERE id = ?", (old,))  # before m003
    # a server that died in a container: its restart has the same host and pid, a new start
    log._db.execute("UPDATE turns SET writer = ? WHERE id = ?",
                    (WRITER.rpartition(".")[0] + ".1", reused))
    log._db.commit()
    ConversationLog(tmp_path / "logs.sqlite")
    statuses = {t.id: (t.status, t.text) for t in log.conversation("s1").turns}
    assert statuses == {mine: ("pending", ""), orphan: ("interrupted", "half an ans"),
                        old: ("interrupted", ""), reused: ("interrupted", "")}
    assert WRITER.count(":") == 2  # host, pid and start are recorded here (Linux)
