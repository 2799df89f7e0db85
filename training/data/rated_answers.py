"""An exported log's ratings, read back: one example per answer, each with its own feedback.

``chatbot logs export`` writes a session as one conversation and, in its ``metadata``, the
rating and comment of each rated answer (``{"answer": n, "rating": 1|-1, "comment": ...}``,
``n`` counting the conversation's answers from 0). Built again with ``--from FILE``, each
answer becomes an example of its own, as a build from the log makes them: the conversation up
to that answer, earlier answers as context only (``weight`` 0), its rating in ``meta`` for
the feedback step. A file without ``metadata.feedback`` (any other transcript) is one
conversation, as it always was.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from training.data.transcripts import Conversation, InvalidRecord, json_kind

KEY = "metadata.feedback"


def rated_answers(conversation: Conversation, record: Any) -> list[Conversation]:
    """``conversation`` split by answer where ``record`` carries an export's feedback list;
    raises ``InvalidRecord`` for an entry that names no answer of it or no rating."""
    metadata = record.get("metadata") if isinstance(record, dict) else None
    feedback = metadata.get("feedback") if isinstance(metadata, dict) else None
    if not isinstance(feedback, list):
        return [conversation]
    answers = [i for i, m in enumerate(conversation.messages) if m.role == "assistant"]
    ratings = _ratings(feedback, len(answers))
    examples = []
    for n, end in enumerate(answers):
        rating, comment = ratings.get(n, (None, None))
        context = tuple(replace(m, weight=0) if m.role == "assistant" else m
                        for m in conversation.messages[:end])
        examples.append(replace(conversation, id=f"{conversation.id}:{n + 1}",
                                messages=context + (conversation.messages[end],),
                                meta={**conversation.meta, "rating": rating,
                                      "comment": comment},
                                group=conversation.split_key))
    return examples


def _ratings(feedback: list, answers: int) -> dict[int, tuple[int, str | None]]:
    """Answer number -> (rating, comment) of each entry, checked."""
    ratings = {}
    for index, entry in enumerate(feedback):
        entry = entry if isinstance(entry, dict) else {}
        n, rating, comment = entry.get("answer"), entry.get("rating"), entry.get("comment")
        if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n < answers:
            raise InvalidRecord(f"'answer' must be the number of one of the conversation's "
                                f"{answers} answers, counted from 0; got {n!r}", index, KEY)
        if rating not in (1, -1) or isinstance(rating, bool):
            raise InvalidRecord(f"'rating' must be 1 (thumbs up) or -1 (down); got {rating!r}",
                                index, KEY)
        if comment is not None and not isinstance(comment, str):
            raise InvalidRecord(f"'comment' must be text; got {json_kind(comment)}", index,
                                KEY)
        ratings[n] = (rating, comment)
    return ratings
