"""Schema of the conversation log: append-only numbered migrations.

Never edit a migration that has shipped; add ``m00N_...`` instead. ``migrate`` applies the ones a
database lacks and records them in ``_migrations``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from chatbot.errors import LogError

BUSY_TIMEOUT_S = 30
"""How long a write waits for another process (a second server, a CLI command) to finish its."""


def m001_initial(db: sqlite3.Connection) -> None:
    db.executescript("""
        CREATE TABLE sessions (
            id TEXT PRIMARY KEY, created_at TEXT NOT NULL, variant TEXT, client TEXT);
        CREATE TABLE turns (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            session_id TEXT NOT NULL REFERENCES sessions(id),
            position INTEGER NOT NULL, role TEXT NOT NULL, text TEXT NOT NULL,
            variant TEXT, model_id TEXT, adapter_id TEXT,
            messages_json TEXT, hits_json TEXT, settings_json TEXT, timings_json TEXT,
            status TEXT NOT NULL, created_at TEXT NOT NULL, finished_at TEXT);
        CREATE INDEX turns_session ON turns(session_id, position);
        CREATE TABLE feedback (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            turn_id INTEGER NOT NULL REFERENCES turns(id),
            rating INTEGER NOT NULL CHECK (rating IN (-1, 1)), comment TEXT,
            created_at TEXT NOT NULL);
        CREATE INDEX feedback_turn ON feedback(turn_id);
    """)


def m002_ab(db: sqlite3.Connection) -> None:
    """A/B: sticky session assignments, arena battles (positions as shown) and votes."""
    db.executescript("""
        CREATE TABLE assignments (
            session_id TEXT PRIMARY KEY, variant TEXT NOT NULL, weights_json TEXT,
            created_at TEXT NOT NULL);
        CREATE TABLE battles (
            id INTEGER PRIMARY KEY AUTOINCREMENT, created_at TEXT NOT NULL,
            session_id TEXT NOT NULL, question TEXT NOT NULL,
            variant_a TEXT NOT NULL, variant_b TEXT NOT NULL,
            turn_a INTEGER REFERENCES turns(id), turn_b INTEGER REFERENCES turns(id));
        CREATE TABLE votes (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            battle_id INTEGER NOT NULL REFERENCES battles(id), voter TEXT NOT NULL,
            choice TEXT NOT NULL CHECK (choice IN ('a', 'b', 'tie', 'both_bad')),
            created_at TEXT NOT NULL, UNIQUE (battle_id, voter));
    """)


def m003_turn_writer(db: sqlite3.Connection) -> None:
    """Which process writes a pending answer (``host:pid``), so the next start can tell an
    answer still being written from one that a killed server left ``pending``."""
    db.executescript("""
        ALTER TABLE turns ADD COLUMN writer TEXT;
        CREATE INDEX turns_pending ON turns(status) WHERE status = 'pending';
    """)


def m004_attribution(db: sqlite3.Connection) -> None:
    """An answer's per-sentence attribution (``chatbot.attribution``): sentence spans, the
    source sentences that back them, the score, what the policy did and, when the answer was
    withheld, the text as generated."""
    db.execute("ALTER TABLE turns ADD COLUMN attribution_json TEXT")


def m005_corrections(db: sqlite3.Connection) -> None:
    """Reviewers' work on answers: corrected texts (the answer in ``turns`` stays as generated;
    the latest correction of a turn wins, earlier ones are kept) and approvals (the answer is
    fine as it is)."""
    db.executescript("""
        CREATE TABLE corrections (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            turn_id INTEGER NOT NULL REFERENCES turns(id), text TEXT NOT NULL,
            author TEXT, created_at TEXT NOT NULL);
        CREATE INDEX corrections_turn ON corrections(turn_id);
        CREATE TABLE approvals (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            turn_id INTEGER NOT NULL REFERENCES turns(id), author TEXT,
            created_at TEXT NOT NULL);
        CREATE INDEX approvals_turn ON approvals(turn_id);
    """)


def m006_turn_error(db: sqlite3.Connection) -> None:
    """Why an answer ended in ``error`` (a backend that timed out, a model that failed): what
    its user was shown, for whoever reads the log later."""
    db.execute("ALTER TABLE turns ADD COLUMN error TEXT")


def m007_history_digest(db: sqlite3.Connection) -> None:
    """A digest of each finished answer's conversation up to it, indexed: an API request,
    which sends the whole conversation, finds the session it continues with one lookup instead
    of reading every session of its client (``ConversationLog.session_holding``). Answers
    logged before it have none, and are not continued by such a request."""
    db.executescript("""
        ALTER TABLE turns ADD COLUMN history TEXT;
        CREATE INDEX turns_history ON turns(history) WHERE history IS NOT NULL;
    """)


MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [
    m001_initial, m002_ab, m003_turn_writer, m004_attribution, m005_corrections,
    m006_turn_error, m007_history_digest]


def migrate(db: sqlite3.Connection) -> list[str]:
    """Apply the migrations ``db`` lacks, each in its own transaction; return their names."""
    db.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at TEXT)")
    done = {row[0] for row in db.execute("SELECT name FROM _migrations")}
    applied = []
    for migration in MIGRATIONS:
        if migration.__name__ in done:
            continue
        with db:
            migration(db)
            db.execute("INSERT INTO _migrations VALUES (?, datetime('now'))",
                       (migration.__name__,))
        applied.append(migration.__name__)
    return applied


def log_exists(path: Path) -> bool:
    """Whether the conversation log at ``path`` has been started. A folder in its place is a
    ``LogError`` saying what to do: SQLite can't open it, and a reader that asked only
    whether a file is there took it for a log with nothing in it yet."""
    if path.is_dir():
        raise LogError(f"the conversation log {path} is a folder, not a file; move that folder "
                       f"aside (mv {path} {path}.folder) and a new log is started, or set "
                       "data_dir to another folder")
    return path.is_file()


def open_log_database(path: Path) -> sqlite3.Connection:
    """The conversation log's database, created if missing and migrated to the current schema:
    WAL (readers never wait for the writer), foreign keys enforced, rows readable by name, and
    shareable between threads (each store serialises its writes)."""
    log_exists(path)  # a folder there is refused with what to do
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, check_same_thread=False, timeout=BUSY_TIMEOUT_S)
    db.row_factory = sqlite3.Row
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA foreign_keys=ON")
        migrate(db)
    except sqlite3.DatabaseError as exc:
        db.close()
        if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
            raise
        if read_only(exc):
            raise _not_writable(path, exc) from None
        raise LogError(f"the conversation log {path} can't be read ({exc}); restore it from "
                         f"a backup, or move it aside (mv {path} {path}.broken) and a new log "
                         "is started") from None
    return db


def check_writable(db: sqlite3.Connection, path: Path) -> None:
    """Write the header's user version as it is, and take it back: ``LogError`` for a log
    that can be read but not written (a read-only file or folder)."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    db.execute("BEGIN IMMEDIATE")
    try:
        db.execute(f"PRAGMA user_version = {int(version)}")
    except sqlite3.OperationalError as exc:
        if not read_only(exc):
            raise
        raise _not_writable(path, exc) from None
    finally:
        db.rollback()


def read_only(exc: sqlite3.Error) -> bool:
    """Whether SQLite refused a write because the database (or its folder) is read-only."""
    return getattr(exc, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_READONLY


def _not_writable(path: Path, exc: Exception) -> LogError:
    return LogError(f"the conversation log {path} can't be written ({exc}); give this user "
                    "write access to it and its folder, or set logging.enabled: false")
