"""The conversation log as training examples: one per finished assistant answer.

Each example is the exact ``messages_json`` the model was sent at chat time (system prompt,
history, the question with its numbered sources, in the variant's template) followed by the
answer, so the model is trained on the prompt it is served with. Examples of one session share
a ``group`` and land on the same side of the train/validation split.

    chatbot data build --name NAME --from logs
"""

from __future__ import annotations

from pathlib import Path

from chatbot.logs import ConversationLog, LoggedConversation, LoggedTurn
from chatbot.types import Message
from training.transcripts import Conversation, ImportResult, Problem, InvalidRecord, validate

LOG_SOURCE = "logs"


def read_log(path: Path) -> ImportResult:
    """Every finished answer in the log at ``path`` (none if the file does not exist)."""
    if not path.is_file():
        return ImportResult([], [], 0)
    log = ConversationLog(path)
    try:
        conversations, problems, records = [], [], 0
        for session in log.conversations():
            for turn in session.turns:
                if turn.role != "assistant":
                    continue
                records += 1
                example = _example(session, turn)
                if isinstance(example, Problem):
                    problems.append(example)
                else:
                    conversations.append(example)
    finally:
        log.close()
    return ImportResult(conversations, problems, records)


def _example(session: LoggedConversation, turn: LoggedTurn) -> Conversation | Problem:
    where = f"{LOG_SOURCE}:{session.session_id}"
    if turn.status != "complete":
        return Problem(where, turn.position, f"answer is {turn.status}, not used")
    if not turn.messages:
        return Problem(where, turn.position, "no prompt recorded with this answer")
    try:
        sent = tuple(Message(m["role"], m["content"]) for m in turn.messages)
    except (KeyError, TypeError):
        return Problem(where, turn.position, "recorded prompt is not a list of role/content")
    messages = sent + (Message("assistant", turn.text),)
    try:
        validate(messages)
    except InvalidRecord as exc:
        return Problem(where, turn.position, str(exc), exc.index)
    dialogue = tuple(Message(t.role, t.text) for t in session.turns
                     if t.position <= turn.position and t.role in ("user", "assistant"))
    meta = {"rating": turn.rating, "comment": turn.comment, "variant": turn.variant,
            "turn_id": turn.id, "hits": len(turn.hits)}
    return Conversation(f"{where}:{turn.position}", messages, LOG_SOURCE, meta,
                        group=where, dialogue=dialogue)
