"""Online A/B: sticky variant assignment per session, arena battles and votes, in the log's
SQLite file (tables from migration ``m002_ab``), so they survive a restart.

    chatbot serve                # with ab.enabled: true, sessions are split by ab.weights
    chatbot ab report            # thumbs-up rates, arena win rates, Bradley-Terry strengths
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from chatbot.errors import InputError, NotInLog
from chatbot.logs import now
from chatbot.migrations import open_log_database

CHOICES = ("a", "b", "tie", "both_bad")


def assign_variant(session_id: str, weights: dict[str, float]) -> str:
    """The variant a session gets: a hash of its id mapped onto the cumulative weights, so the
    same session always gets the same variant and shares follow ``weights``."""
    total = sum(weights.values())
    if not weights or total <= 0:
        raise InputError("A/B weights are empty or all zero; set ab.weights in the config")
    digest = hashlib.sha256(session_id.encode()).digest()
    point = int.from_bytes(digest[:8], "big") / 2**64 * total
    for name, weight in weights.items():
        if point < weight:
            return name
        point -= weight
    return next(name for name, weight in reversed(weights.items()) if weight > 0)


def arena_pairs(variants: Sequence[str], configured: Sequence[Sequence[str]] = ()
                ) -> list[tuple[str, str]]:
    """The pairs the arena draws from: the configured ones, else every pair of variants."""
    pairs = [tuple(p) for p in configured] or list(itertools.combinations(variants, 2))
    if not pairs:
        raise InputError("the arena needs two variants; add one under variants in the config")
    return pairs


def draw_pair(pairs: Sequence[tuple[str, str]], rng: random.Random) -> tuple[str, str]:
    """A random pair in a random order: ``(shown as A, shown as B)``."""
    first, second = rng.choice(list(pairs))
    return (first, second) if rng.random() < 0.5 else (second, first)


@dataclass(frozen=True)
class Battle:
    id: int
    question: str
    variant_a: str
    variant_b: str


@dataclass(frozen=True)
class Vote:
    variant_a: str
    variant_b: str
    choice: str


class AbStore:
    """Assignments, battles and votes beside the conversation log (same SQLite file)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db = open_log_database(self.path)
        self._lock = threading.Lock()

    def close(self) -> None:
        self._db.close()

    def sticky_variant(self, session_id: str, weights: dict[str, float]) -> str:
        """The session's stored variant while it still has weight (shares may change without
        moving anyone); else a fresh hash assignment, stored."""
        with self._lock, self._db:
            row = self._db.execute("SELECT variant FROM assignments WHERE session_id = ?",
                                   (session_id,)).fetchone()
            if row and weights.get(row[0], 0) > 0:
                return row[0]
            variant = assign_variant(session_id, weights)
            self._db.execute("INSERT OR REPLACE INTO assignments VALUES (?, ?, ?, ?)",
                             (session_id, variant, json.dumps(weights), now()))
            return variant

    def assignments(self) -> dict[str, int]:
        rows = self._db.execute("SELECT variant, COUNT(*) FROM assignments GROUP BY variant")
        return dict(rows.fetchall())

    def start_battle(self, session_id: str, question: str, variant_a: str, variant_b: str
                     ) -> Battle:
        with self._lock, self._db:
            battle_id = self._db.execute(
                "INSERT INTO battles (created_at, session_id, question, variant_a, variant_b) "
                "VALUES (?, ?, ?, ?, ?)", (now(), session_id, question, variant_a, variant_b)
            ).lastrowid
        return Battle(battle_id, question, variant_a, variant_b)

    def record_turns(self, battle_id: int, turn_a: int | None, turn_b: int | None) -> None:
        with self._lock, self._db:
            self._db.execute("UPDATE battles SET turn_a = ?, turn_b = ? WHERE id = ?",
                             (turn_a, turn_b, battle_id))

    def battle(self, battle_id: int) -> Battle:
        row = self._db.execute("SELECT id, question, variant_a, variant_b FROM battles "
                               "WHERE id = ?", (battle_id,)).fetchone()
        if row is None:
            raise NotInLog(f"no arena battle {battle_id} in {self.path}")
        return Battle(*row)

    def vote(self, battle_id: int, voter: str, choice: str) -> Battle:
        """Record a vote; a second vote by the same voter on the same battle is refused."""
        if choice not in CHOICES:
            raise InputError(f"vote {choice!r} is not one of {', '.join(CHOICES)}")
        battle = self.battle(battle_id)
        try:
            with self._lock, self._db:
                self._db.execute("INSERT INTO votes (battle_id, voter, choice, created_at) "
                                 "VALUES (?, ?, ?, ?)", (battle_id, voter, choice, now()))
        except sqlite3.IntegrityError:
            raise InputError(f"{voter} already voted on battle {battle_id}; "
                             "ask a new question for a new pair") from None
        return battle

    def votes(self) -> list[Vote]:
        rows = self._db.execute("SELECT b.variant_a, b.variant_b, v.choice FROM votes v "
                                "JOIN battles b ON b.id = v.battle_id ORDER BY v.id")
        return [Vote(*row) for row in rows]

    def decided_battles(self) -> list[tuple[int, int, int]]:
        """(battle id, winner's turn id, loser's turn id) of every battle with both answers
        logged whose votes chose A or B (more votes for one than for the other)."""
        rows = self._db.execute(
            "SELECT b.id, b.turn_a, b.turn_b, SUM(v.choice = 'a'), SUM(v.choice = 'b') "
            "FROM battles b JOIN votes v ON v.battle_id = b.id WHERE b.turn_a IS NOT NULL "
            "AND b.turn_b IS NOT NULL GROUP BY b.id ORDER BY b.id")
        return [(battle, a, b) if for_a > for_b else (battle, b, a)
                for battle, a, b, for_a, for_b in rows if for_a != for_b]

    def thumbs(self) -> dict[str, tuple[int, int]]:
        """Per variant: (thumbs up, rated answers), counting each answer's latest rating, of
        the sessions the split sent to that variant: a variant picked by hand (``--variant``,
        the API's ``model``) is not randomized, so it would bias the comparison. Arena answers
        are left out (they are judged by votes)."""
        rows = self._db.execute("""
            SELECT t.variant, SUM(f.rating > 0), COUNT(*) FROM turns t
            JOIN assignments a ON a.session_id = t.session_id AND a.variant = t.variant
            JOIN feedback f ON f.id = (SELECT MAX(id) FROM feedback WHERE turn_id = t.id)
            WHERE t.role = 'assistant' AND t.id NOT IN (
                SELECT turn_a FROM battles WHERE turn_a IS NOT NULL
                UNION SELECT turn_b FROM battles WHERE turn_b IS NOT NULL)
            GROUP BY t.variant""")
        return {variant: (int(ups), int(n)) for variant, ups, n in rows if variant}
