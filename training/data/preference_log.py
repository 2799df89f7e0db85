"""The conversation log as preference signals: thumbs, corrections and arena votes.

Each signal becomes a :class:`~training.data.transcripts.Conversation` whose messages are the
exact prompt the model was sent followed by the answer(s), and whose dialogue is what the
session's people said (``training.data.from_log.spoken``), so the curation steps (PII, dedupe,
split) run on it as on SFT examples: names are looked for in what people said, not in the
retrieved sources. ``meta["kind"]`` says what it will be written as:

- ``kto``: one answer, ``meta["label"]`` true (thumbs up, a correction, a reviewer's approval,
  which wins over the thumb; never an answer that was corrected) or false (thumbs down);
- ``dpo``: two answers to one prompt, chosen then rejected (a correction and the original; an
  arena winner and loser that were sent the same messages).

    chatbot data build --kind preference --name NAME
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from chatbot.ab import AbStore
from chatbot.logs import ConversationLog, LoggedConversation, LoggedTurn
from chatbot.migrations import log_exists
from chatbot.types import Message
from training.data.from_log import spoken
from training.data.transcripts import Conversation

THUMBS_UP, THUMBS_DOWN, CORRECTION, ARENA = "thumbs up", "thumbs down", "correction", "arena"
APPROVED = "approved"
"""A reviewer found the answer fine as it is: desirable, whatever its thumb said."""


@dataclass(frozen=True)
class Signals:
    conversations: list[Conversation]
    answers: int
    """Answers read: the finished ones, and those cut short that someone corrected."""
    skipped: dict[str, int]
    """Signals left out, by reason (no prompt recorded, arena answers sent different prompts)."""


def read_signals(path: Path, corrections: str = "prefer") -> Signals:
    """Every preference signal in the log at ``path``; ``corrections`` is the data config's
    policy: ``ignore`` leaves corrections out, ``only`` keeps them alone."""
    if not log_exists(path):
        return Signals([], 0, {})
    log = ConversationLog(path)
    try:
        answers = {turn.id: (session, turn) for session in log.conversations()
                   for turn in session.turns if turn.role == "assistant"
                   and (turn.status == "complete" or turn.correction is not None)}
    finally:
        log.close()
    found, skipped = [], {}
    for session, turn in answers.values():
        if not turn.messages:
            skipped["no prompt recorded"] = skipped.get("no prompt recorded", 0) + 1
            continue
        found += _turn_signals(session, turn, corrections)
    if corrections != "only":
        found += _arena_pairs(path, answers, skipped)
    return Signals(found, len(answers), skipped)


def _prompt(turn: LoggedTurn) -> tuple[Message, ...]:
    return tuple(Message(m["role"], m["content"]) for m in turn.messages)


def _turn_signals(session: LoggedConversation, turn: LoggedTurn, corrections: str
                  ) -> list[Conversation]:
    """A corrected answer is never desirable itself, whatever its thumb or approval said: its
    correction replaced it (it is the rejected side of their pair)."""
    where = f"logs:{session.session_id}:{turn.position}"
    found = []
    finished = turn.status == "complete"  # else only its correction counts, not its cut text
    fixed = turn.correction if corrections != "ignore" else None
    corrected = fixed is not None and fixed.strip() != turn.text.strip()
    if finished and turn.approved and not corrected and corrections != "only":
        found.append(_kto(f"{where}:approved", session, turn, turn.text, True, APPROVED))
    elif (finished and turn.rating is not None and corrections != "only"
          and not (corrected and turn.rating == 1)):
        label = turn.rating == 1
        found.append(_kto(f"{where}:{'up' if label else 'down'}", session, turn, turn.text,
                          label, THUMBS_UP if label else THUMBS_DOWN))
    if corrected:
        found.append(_kto(f"{where}:corrected", session, turn, fixed, True, CORRECTION))
        if finished:
            found.append(_dpo(f"{where}:pair", session, turn, fixed, turn.text, CORRECTION))
    return found


def _arena_pairs(path: Path, answers: dict[int, tuple[LoggedConversation, LoggedTurn]],
                 skipped: dict[str, int]) -> list[Conversation]:
    store = AbStore(path)
    try:
        decided = store.decided_battles()
    finally:
        store.close()
    found = []
    for battle, won, lost in decided:
        if won not in answers or lost not in answers:
            continue
        (session, winner), loser = answers[won], answers[lost][1]
        if not winner.messages or winner.messages != loser.messages:
            skipped["arena answers sent different prompts"] = (
                skipped.get("arena answers sent different prompts", 0) + 1)
            continue
        found.append(_dpo(f"arena:{battle}", session, winner, winner.text, loser.text, ARENA))
    return found


def _kto(cid: str, session: LoggedConversation, turn: LoggedTurn, text: str, label: bool,
         origin: str) -> Conversation:
    return _signal(cid, session, turn, (text,), {"kind": "kto", "label": label, "from": origin})


def _dpo(cid: str, session: LoggedConversation, turn: LoggedTurn, chosen: str, rejected: str,
         origin: str) -> Conversation:
    return _signal(cid, session, turn, (chosen, rejected), {"kind": "dpo", "from": origin})


def _signal(cid: str, session: LoggedConversation, turn: LoggedTurn, answers: tuple[str, ...],
            meta: dict) -> Conversation:
    """``turn``'s prompt as sent, then ``answers``; the dialogue is the SFT examples' own."""
    messages = _prompt(turn) + tuple(Message("assistant", answer) for answer in answers)
    return Conversation(cid, messages, "logs", meta, group=f"logs:{session.session_id}",
                        dialogue=spoken(session, turn, *answers))
