"""The conversation log: every turn, its exact prompt, sources, variant and feedback, in SQLite.

The user's message is written before generation starts, the answer's text so far while it
streams, and the whole answer when it ends (or marked ``interrupted``), so stopping the server
mid-answer loses no turn. An answer left ``pending`` by a process that died is marked
``interrupted`` the next time the log is opened.

    chatbot logs list
    chatbot logs show SESSION_ID
    chatbot logs export --format openai --out conversations.jsonl
    chatbot logs correct TURN --text "the right answer"    # kept beside the original
    chatbot logs delete --containing dana.k@example.com     # chatbot.log_erasure
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from chatbot.errors import InputError, NotInLog
from chatbot.log_records import Correction, LoggedConversation, LoggedTurn, ReviewItem
from chatbot.log_writer import WRITER, writer_alive
from chatbot.migrations import check_writable, open_log_database, read_only
from chatbot.review_reasons import review_reasons, unreviewed
from index.text import clean_text

MAX_NOTE_CHARS = 20_000
"""The longest correction or feedback comment kept. A correction is an answer, and becomes
training data: one longer than this is a paste gone wrong, and would be stored in full."""
LARGEST_ID = 2**63 - 1
"""SQLite's largest row id; a bigger turn id (from a script or a stranger) names no turn."""


def history_digest(turns: list[tuple[str, str]]) -> str:
    """What identifies a conversation so far: its (role, text) turns in order, ends of
    whitespace aside (a chat app may trim what it sends back)."""
    held = json.dumps([[role, (text or "").strip()] for role, text in turns])
    return hashlib.sha256(held.encode()).hexdigest()


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class ConversationLog:
    """One SQLite file in WAL mode; safe to share between the server's threads."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db = open_log_database(self.path)
        self._lock = threading.Lock()
        self.close_orphaned_turns()

    def close(self) -> None:
        self._db.close()

    def checkpoint(self) -> None:
        """Fold the WAL into the main file: a copy of logs.sqlite alone, as a backup takes it,
        then holds every turn written so far."""
        with self._lock:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def _write(self, sql: str, params: tuple) -> int:
        with self._lock, self._db:
            return self._db.execute(sql, params).lastrowid

    def ensure_session(self, session_id: str, variant: str | None = None,
                       client: str | None = None) -> str:
        """The client that began ``session_id`` (``""`` where none was: the web UI, the
        terminal): ``client`` when this call began it. Begun and read in one step, so two
        clients naming one new session at once can't both take it."""
        with self._lock, self._db:
            self._db.execute("INSERT OR IGNORE INTO sessions VALUES (?, ?, ?, ?)",
                             (session_id, now(), variant, client))
            row = self._db.execute("SELECT client FROM sessions WHERE id = ?",
                                   (session_id,)).fetchone()
        return row["client"] or ""

    def started_by(self, session_id: str) -> str | None:
        """The client recorded when ``session_id`` began (``""`` where none was: the web UI,
        the terminal); ``None`` when the log has no such session."""
        row = self._db.execute("SELECT client FROM sessions WHERE id = ?",
                               (session_id,)).fetchone()
        return None if row is None else row["client"] or ""

    def session_holding(self, client: str, turns: list[tuple[str, str]]) -> str | None:
        """The latest session ``client`` began whose turns are exactly ``turns`` ((role, text)
        in order, ends of whitespace aside), ending with an answer; ``None`` if there is none.
        A stateless API client sends the conversation so far with each question: the session
        that holds it is the conversation the question continues."""
        if not turns or turns[-1][0] != "assistant":
            return None
        row = self._db.execute(
            "SELECT t.session_id FROM turns t JOIN sessions s ON s.id = t.session_id "
            "WHERE t.history = ? AND s.client = ? AND NOT EXISTS (SELECT 1 FROM turns later "
            "WHERE later.session_id = t.session_id AND later.position > t.position) "
            "ORDER BY t.id DESC LIMIT 1", (history_digest(turns), client)).fetchone()
        return None if row is None else row[0]

    def _next_position(self, session_id: str) -> int:
        row = self._db.execute("SELECT COALESCE(MAX(position), -1) + 1 FROM turns "
                               "WHERE session_id = ?", (session_id,)).fetchone()
        return row[0]

    def add_turn(self, session_id: str, role: str, text: str, *, variant: str | None = None,
                 model_id: str | None = None, adapter_id: str | None = None,
                 messages: list[dict] | None = None, hits: list[dict] | None = None,
                 settings: dict | None = None, status: str = "complete") -> int:
        """Append a turn; an assistant turn starts ``pending`` and is closed by ``finish_turn``."""
        with self._lock, self._db:
            return self._insert_turn(session_id, role, text, variant, model_id, adapter_id,
                                     messages, hits, settings, status)

    def add_question(self, session_id: str, question: str, **answer: object) -> int:
        """The user's question and its answer's ``pending`` turn (``answer``: that turn's
        ``add_turn`` fields) in one step; the answer's id. The Review tab and the dataset build
        take an answer's question to be the user turn just before it: a parallel request on
        the session must not land in between."""
        with self._lock, self._db:
            self._insert_turn(session_id, "user", question, answer.get("variant"))
            return self._insert_turn(session_id, "assistant", "", status="pending", **answer)

    def _insert_turn(self, session_id: str, role: str, text: str, variant: str | None = None,
                     model_id: str | None = None, adapter_id: str | None = None,
                     messages: list[dict] | None = None, hits: list[dict] | None = None,
                     settings: dict | None = None, status: str = "complete") -> int:
        return self._db.execute(
            "INSERT INTO turns (session_id, position, role, text, variant, model_id, "
            "adapter_id, messages_json, hits_json, settings_json, status, created_at, "
            "writer) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (session_id, self._next_position(session_id), role, text, variant, model_id,
             adapter_id, _dump(messages), _dump(hits), _dump(settings), status, now(),
             WRITER if status == "pending" else None)).lastrowid

    def save_partial(self, turn_id: int, text: str) -> None:
        """The text of a ``pending`` answer so far: a killed server loses only what came after."""
        self._write("UPDATE turns SET text = ? WHERE id = ? AND status = 'pending'",
                    (text, turn_id))

    def finish_turn(self, turn_id: int, text: str, timings: dict, status: str,
                    attribution: dict | None = None, error: str | None = None) -> None:
        """``error``: why an answer ended in ``error`` (the message its user was shown)."""
        with self._lock, self._db:
            self._db.execute(
                "UPDATE turns SET text = ?, timings_json = ?, status = ?, finished_at = ?, "
                "attribution_json = ?, error = ? WHERE id = ?",
                (text, _dump(timings), status, now(), _dump(attribution), error, turn_id))
            held = self._db.execute(
                "SELECT t.role, t.text FROM turns t JOIN turns answer ON answer.id = ? "
                "AND t.session_id = answer.session_id AND t.position <= answer.position "
                "ORDER BY t.position", (turn_id,)).fetchall()
            self._db.execute("UPDATE turns SET history = ? WHERE id = ?",
                             (history_digest([(r["role"], r["text"]) for r in held]), turn_id))

    def close_orphaned_turns(self) -> list[int]:
        """Mark ``interrupted`` the answers left ``pending`` by a process that is gone; answers
        still being written by a live process (a server sharing this log) are left alone."""
        pending = self._db.execute("SELECT id, writer FROM turns WHERE status = 'pending'")
        orphans = [row["id"] for row in pending if not writer_alive(row["writer"])]
        try:
            with self._lock, self._db:
                self._db.executemany("UPDATE turns SET status = 'interrupted', finished_at = ? "
                                     "WHERE id = ? AND status = 'pending'",
                                     [(now(), turn_id) for turn_id in orphans])
        except sqlite3.OperationalError as exc:  # a read-only log is still read
            if not read_only(exc):
                raise
            return []
        return orphans

    def check_writable(self) -> None:
        """Refuse, naming the log, one that can be read but not written: a bot answering
        into it would fail every user's answer."""
        check_writable(self._db, self.path)

    def add_feedback(self, turn_id: int, rating: int, comment: str | None = None) -> int:
        if rating not in (-1, 1):
            raise InputError(f"feedback rating must be 1 (thumbs up) or -1 (down), got {rating}")
        row = self._turn(turn_id)
        if row is None or row["role"] != "assistant":
            raise (NotInLog if row is None else InputError)(
                f"no answer with turn id {turn_id} in the conversation log")
        comment = _note(comment or "", f"the comment on turn {turn_id}")
        return self._write("INSERT INTO feedback (turn_id, rating, comment, created_at) "
                           "VALUES (?, ?, ?, ?)", (turn_id, rating, comment or None, now()))

    def withdraw_feedback(self, turn_id: int) -> None:
        """Forget the ratings and comments given to ``turn_id``: its rater took them back, and
        a rating nobody stands by must not steer training data or the review queue."""
        self._write("DELETE FROM feedback WHERE turn_id = ?", (turn_id,))

    def add_correction(self, turn_id: int, text: str, author: str | None = None, *,
                       seen_unreviewed: bool = False) -> Correction:
        """Record ``text`` as the right answer of ``turn_id``; the generated text is kept.
        ``seen_unreviewed``: the author saw the answer uncorrected and unapproved (in the review
        queue), so a review saved by someone else since is not replaced but reported."""
        return self.add_corrections([(turn_id, text)], author, seen_unreviewed)[0]

    def refused_corrections(self, rows: list[tuple[int, str]]) -> list[tuple[int, str]]:
        """(index in ``rows``, why) of each correction that can't be saved."""
        return [(index, str(why)) for index, why in self._checked(rows)[1]]

    def _checked(self, rows: list[tuple[int, str]]
                 ) -> tuple[list[tuple[int, str]], list[tuple[int, InputError]]]:
        """The rows as they would be saved, and (index, why) of each that can't be."""
        kept, refused = [], []
        for index, (turn_id, text) in enumerate(rows):
            try:
                kept.append((turn_id, self._correction(turn_id, text)))
            except InputError as exc:
                refused.append((index, exc))
        return kept, refused

    def add_corrections(self, rows: list[tuple[int, str]], author: str | None = None,
                        seen_unreviewed: bool = False) -> list[Correction]:
        """Several corrections at once: all are checked first, so a bad one saves none, and
        every bad one is named (``seen_unreviewed``: as in ``add_correction``)."""
        checked, refused = self._checked(rows)
        if len(rows) == 1 and refused:
            raise refused[0][1]
        if refused:
            raise InputError(f"{len(refused)} of {len(rows)} corrections can't be saved, so "
                             "none was: " + "; ".join(str(why) for _, why in refused[:10]))
        rows = checked
        created = now()
        with self._lock, self._db:
            ids = [self._review("INSERT INTO corrections (turn_id, text, author, created_at) "
                                "SELECT :turn, :text, :author, :at", seen_unreviewed,
                                turn=turn_id, text=text, author=author, at=created)
                   for turn_id, text in rows]
        return [Correction(row_id, turn_id, text, author, created)
                for row_id, (turn_id, text) in zip(ids, rows)]

    def _correction(self, turn_id: int, text: str | None) -> str:
        """The text to keep as the correction of ``turn_id``, or why it can't be kept: the answer
        itself, resaved unedited, would train on it as if a reviewer had fixed it."""
        written = self._answer(turn_id)["written"]
        text = _note(text or "", f"the correction of turn {turn_id}")
        if not text:
            raise InputError(f"the correction of turn {turn_id} is empty; give the corrected "
                             "answer's text")
        if text.split() == clean_text(written).split():
            raise InputError(f"the correction of turn {turn_id} is the same as the answer; edit "
                             "it, or approve the answer as it is (Approve in the Review tab)")
        return text

    def approve(self, turn_id: int, author: str | None = None, *,
                seen_unreviewed: bool = False) -> int:
        """Mark an answer as fine as it is: it leaves the review queue (``seen_unreviewed``: as
        in ``add_correction``)."""
        self._answer(turn_id)
        with self._lock, self._db:
            return self._review("INSERT INTO approvals (turn_id, author, created_at) "
                                "SELECT :turn, :author, :at", seen_unreviewed,
                                turn=turn_id, author=author, at=now())

    def _review(self, insert: str, seen_unreviewed: bool, **values: object) -> int:
        """Run ``insert`` (an INSERT ... SELECT of ``values``); with ``seen_unreviewed``, only
        while nobody has corrected or approved the turn, checked by the same statement: of two
        reviewers saving at once, the second is refused rather than replacing the first."""
        cursor = self._db.execute(
            insert + (f" WHERE {unreviewed(':turn')}" if seen_unreviewed else ""), values)
        if not cursor.rowcount:
            done = "corrected" if self.corrections(values["turn"]) else "approved"
            raise InputError(f"turn {values['turn']} was {done} by someone else since you "
                             "opened it; theirs is kept: Refresh to see the list as it is now")
        return cursor.lastrowid

    def corrections(self, turn_id: int) -> list[Correction]:
        """Every correction of ``turn_id``, oldest first (the last one counts)."""
        rows = self._db.execute("SELECT * FROM corrections WHERE turn_id = ? ORDER BY id",
                                (turn_id,))
        return [Correction(r["id"], r["turn_id"], r["text"], r["author"], r["created_at"])
                for r in rows]

    def _answer(self, turn_id: int):
        """The turn's row (``_turn``), or a refusal where it is not a finished answer."""
        row = self._turn(turn_id)
        if row is None:
            raise NotInLog(f"no turn {turn_id} in the conversation log; `chatbot logs show "
                             "SESSION` lists the turn ids of a conversation")
        if row["role"] != "assistant":
            raise InputError(f"turn {turn_id} is a {row['role']} message, not an answer; "
                             "correct the bot's answer that follows it")
        if row["status"] == "pending":
            raise InputError(f"turn {turn_id} is still being answered; correct it once done")
        return row

    def _turn(self, turn_id: int):
        """The turn's role, status and ``written`` text (what the model wrote, which a withheld
        answer's user did not see), or None where there is no such turn."""
        if not 0 < turn_id <= LARGEST_ID:
            return None
        return self._db.execute(
            "SELECT role, status, COALESCE(NULLIF(json_extract(attribution_json, "
            "'$.withheld_text'), ''), text) AS written FROM turns WHERE id = ?",
            (turn_id,)).fetchone()

    def review_queue(self, min_support: float, limit: int = 50) -> list[ReviewItem]:
        """Finished answers that were thumbed down, flagged, withheld or scored below
        ``min_support``, and that nobody corrected or approved since; newest first."""
        rows = self._db.execute(
            "SELECT t.session_id, t.position FROM turns t WHERE t.role = 'assistant' "
            "AND t.status = 'complete' "
            f"AND {unreviewed('t.id')} "
            "AND ((SELECT rating FROM feedback f WHERE f.turn_id = t.id "
            "      ORDER BY f.id DESC LIMIT 1) = -1 "
            "  OR json_extract(t.attribution_json, '$.action') IN ('flagged', 'withheld') "
            "  OR json_extract(t.attribution_json, '$.score') < ?) "
            "ORDER BY t.id DESC LIMIT ?", (min_support, limit)).fetchall()
        items = []
        for row in rows:
            turns = self._turns(row["session_id"])
            answer = next(t for t in turns if t.position == row["position"])
            question = next((t.text for t in reversed(turns)
                             if t.position < answer.position and t.role == "user"), "")
            items.append(ReviewItem(row["session_id"], question, answer,
                                    review_reasons(answer, min_support)))
        return items

    def sessions(self, limit: int = 50) -> list[dict]:
        rows = self._db.execute(
            "SELECT s.id, s.created_at, s.variant, COUNT(t.id) AS turns, "
            "MAX(t.created_at) AS last_at FROM sessions s LEFT JOIN turns t "
            "ON t.session_id = s.id GROUP BY s.id ORDER BY last_at DESC LIMIT ?", (limit,))
        return [dict(row) for row in rows]

    def conversation(self, session_id: str) -> LoggedConversation:
        row = self._db.execute("SELECT created_at FROM sessions WHERE id = ?",
                               (session_id,)).fetchone()
        if row is None:
            raise InputError(f"no session {session_id!r} in {self.path}; "
                             "`chatbot logs list` shows the sessions")
        return LoggedConversation(session_id, row["created_at"], self._turns(session_id))

    def conversations(self) -> Iterator[LoggedConversation]:
        """Every session in the order it started, with its turns and their feedback."""
        ids = [r[0] for r in self._db.execute("SELECT id FROM sessions ORDER BY created_at")]
        for session_id in ids:
            yield self.conversation(session_id)

    def _turns(self, session_id: str) -> list[LoggedTurn]:
        rows = self._db.execute(
            "SELECT t.*, (SELECT rating FROM feedback f WHERE f.turn_id = t.id "
            "ORDER BY f.id DESC LIMIT 1) AS rating, (SELECT comment FROM feedback f "
            "WHERE f.turn_id = t.id ORDER BY f.id DESC LIMIT 1) AS comment, (SELECT text "
            "FROM corrections c WHERE c.turn_id = t.id ORDER BY c.id DESC LIMIT 1) AS correction,"
            " EXISTS (SELECT 1 FROM approvals a WHERE a.turn_id = t.id) AS approved "
            "FROM turns t WHERE session_id = ? ORDER BY position", (session_id,))
        return [LoggedTurn(
            id=r["id"], position=r["position"], role=r["role"], text=r["text"],
            variant=r["variant"], status=r["status"], created_at=r["created_at"],
            messages=_load(r["messages_json"], []), hits=_load(r["hits_json"], []),
            timings=_load(r["timings_json"], {}), settings=_load(r["settings_json"], {}),
            rating=r["rating"], comment=r["comment"],
            attribution=_load(r["attribution_json"], None), correction=r["correction"],
            approved=bool(r["approved"]), error=r["error"])
            for r in rows]


def _note(text: str, what: str) -> str:
    """A correction's or comment's text as it is kept: without control characters and the
    space around it; one longer than ``MAX_NOTE_CHARS`` is refused."""
    text = clean_text(text).strip()
    if len(text) > MAX_NOTE_CHARS:
        raise InputError(f"{what} has {len(text):,} characters; at most {MAX_NOTE_CHARS:,} are "
                         "kept, so shorten it")
    return text


def _dump(value: object) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False)


def _load(text: str | None, default: object) -> object:
    return default if text is None else json.loads(text)
