"""Token lengths in the chat model's own tokenizer, rendered with its chat template.

``total`` counts the whole rendered conversation (what the model reads, default system prompt
of the chat template included); ``supervised`` counts the assistant turns' text plus one
end-of-turn token each, which is what an "assistant turns" masking policy trains on. The exact
labels are made by the training step; this is for filtering and the data report.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Protocol, Sequence

from chatbot.types import Message

BATCH = 2048


@dataclass(frozen=True)
class Lengths:
    total: int
    supervised: int


class TokenCounter(Protocol):
    name: str

    def measure(self, conversations: Sequence[Sequence[Message]]) -> list[Lengths]: ...


class ChatTemplateCounter:
    """Counts with a transformers tokenizer and its chat template (fast tokenizers batch)."""

    def __init__(self, tokenizer, name: str) -> None:
        self.tokenizer = tokenizer
        self.name = name

    def measure(self, conversations: Sequence[Sequence[Message]]) -> list[Lengths]:
        lengths: list[Lengths] = []
        for start in range(0, len(conversations), BATCH):
            lengths += self._measure_batch(conversations[start:start + BATCH])
        return lengths

    def _measure_batch(self, batch: Sequence[Sequence[Message]]) -> list[Lengths]:
        chats = [[{"role": m.role, "content": m.content} for m in messages] for messages in batch]
        rendered = self.tokenizer.apply_chat_template(chats, tokenize=False)
        totals = self._count(rendered)
        answers = [m.content for messages in batch for m in messages if m.role == "assistant"]
        answer_tokens = iter(self._count(answers))
        lengths = []
        for messages, total in zip(batch, totals):
            turns = sum(1 for m in messages if m.role == "assistant")
            supervised = sum(next(answer_tokens) + 1 for _ in range(turns))
            lengths.append(Lengths(total, supervised))
        return lengths

    def _count(self, texts: list[str]) -> list[int]:
        if not texts:
            return []
        encoded = self.tokenizer(texts, add_special_tokens=False, return_attention_mask=False)
        return [len(ids) for ids in encoded["input_ids"]]


@functools.lru_cache(maxsize=4)
def chat_counter(model_dir: str, name: str) -> ChatTemplateCounter:
    """The counter for a resolved chat model directory (loaded once per process)."""
    from transformers import AutoTokenizer

    return ChatTemplateCounter(AutoTokenizer.from_pretrained(model_dir), name)
