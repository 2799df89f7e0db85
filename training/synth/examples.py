"""A kept item as a training example in the exact prompt serving sends (RAFT-style).

The question is searched with the bot's real search; its source chunk is put among the ``k``
passages at a random position (replacing the last hit when the search missed it), and the
prompt is rendered by ``chatbot.prompts.build_messages`` with the serving variant's template, as
the chat engine does. The model so learns to answer from the right passage among distractors,
which is what it meets when it is served. When the template shows the passages, the target
cites the chunk's number as the chat's rules ask.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from chatbot.prompts import PromptTemplate, build_messages
from chatbot.types import Message
from index.types import Chunk, Hit
from training.data.transcripts import Conversation
from training.synth.progress import Item

Search = Callable[[str, int], list[Hit]]


def with_gold(hits: list[Hit], gold: Chunk, k: int, rng: random.Random) -> tuple[list[Hit], int]:
    """``k`` passages (fewer when the index has fewer) with ``gold`` at a random position;
    the position, 0-based."""
    distractors = [hit for hit in hits if hit.chunk.chunk_id != gold.chunk_id][:max(0, k - 1)]
    position = rng.randrange(len(distractors) + 1)
    placed = [*distractors[:position], Hit(gold, 1.0, position + 1), *distractors[position:]]
    return placed, position


def training_example(item: Item, number: int, chunk: Chunk, search: Search, k: int,
                     template: PromptTemplate, bot_name: str, seed: int) -> Conversation:
    """Conversation ``synth:<chunk id>:<number>``, grouped by its document for the split."""
    example_id = f"synth:{chunk.chunk_id}:{number}"
    rng = random.Random(f"{seed}:{example_id}")
    hits, position = with_gold(search(item.question, k), chunk, k, rng)
    messages = build_messages(template, item.question, hits, bot_name=bot_name)
    cited = chunk.text in messages[-1].content
    answer = f"{item.answer} [{position + 1}]" if cited else item.answer
    dialogue = (Message("user", item.question), Message("assistant", answer))
    return Conversation(example_id, (*messages, dialogue[1]), chunk.source,
                        {"chunk_id": chunk.chunk_id, "location": chunk.location,
                         "gold_position": position + 1, "support": item.support,
                         "answer": item.answer},
                        group=chunk.source, dialogue=dialogue)
