"""Token lengths in the chat model's own tokenizer, rendered with its chat template.

``total`` counts the whole rendered conversation (what the model reads, default system prompt
of the chat template included); ``supervised`` counts the assistant turns' text plus one
end-of-turn token each (a turn of ``weight`` 0 is context, not learned), which is what an
"assistant turns" masking policy trains on. The exact labels are made by the training step;
this is for filtering and the data report.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Protocol, Sequence

from chatbot.types import Message

BATCH = 4096
# Characters a token may stand for beyond its vocabulary spelling: a normaliser may join
# characters (a letter and its combining accent) before the tokenizer reads them.
NORMALISED_MARGIN = 4


@dataclass(frozen=True)
class Lengths:
    total: int
    supervised: int


class TokenCounter(Protocol):
    name: str

    def measure(self, conversations: Sequence[Sequence[Message]],
                ceiling: int | None = None) -> list[Lengths]: ...


class ChatTemplateCounter:
    """Counts with a transformers tokenizer and its chat template.

    The rendered conversation is the template's fixed text around each message plus the
    message contents; each part is tokenized once and cached (every example repeats the same
    system prompt), and the sum equals tokenizing the whole rendering as long as no BPE merge
    crosses a special token (true of ChatML templates; ``exact_total`` checks it in the tests).
    """

    def __init__(self, tokenizer, name: str) -> None:
        self.tokenizer = tokenizer
        self.name = name
        self._contents: dict[str, int] = {}
        self._frames: dict[tuple[str, ...], int] = {}

    def measure(self, conversations: Sequence[Sequence[Message]],
                ceiling: int | None = None) -> list[Lengths]:
        """Lengths of ``conversations``; a message whose characters alone prove it longer than
        ``ceiling`` tokens is not tokenized (a pasted 6 MB log line took 2 GB and 20 s) and
        counts as that proof's bound, which is past ``ceiling``."""
        self._contents = {}  # per call: a long-lived process must not grow without bound
        contents = [m.content for messages in conversations for m in messages]
        if ceiling is not None:
            most = self._longest_token * NORMALISED_MARGIN  # characters a token may stand for
            self._contents = {c: -(-len(c) // most) for c in contents
                              if len(c) > (ceiling + 1) * most}
        self._learn(contents)
        lengths = []
        for messages in conversations:
            roles = tuple(m.role for m in messages)
            if roles not in self._frames:
                self._frames[roles] = self.exact_total([Message(r, "") for r in roles])
            content = sum(self._contents[m.content] for m in messages)
            answers = sum(self._contents[m.content] + 1 for m in messages if m.learned)
            lengths.append(Lengths(self._frames[roles] + content, answers))
        return lengths

    @functools.cached_property
    def _longest_token(self) -> int:
        """The most characters a token of the vocabulary spells."""
        return max(map(len, self.tokenizer.get_vocab()))

    def exact_total(self, messages: Sequence[Message]) -> int:
        """Tokens of the whole conversation rendered with the chat template, uncached."""
        chat = [{"role": m.role, "content": m.content} for m in messages]
        rendered = self.tokenizer.apply_chat_template(chat, tokenize=False)
        return self._count([rendered])[0]

    def _learn(self, contents: list[str]) -> None:
        new = list({c: None for c in contents if c not in self._contents})
        for start in range(0, len(new), BATCH):
            batch = new[start:start + BATCH]
            self._contents.update(zip(batch, self._count(batch)))

    def _count(self, texts: list[str]) -> list[int]:
        if not texts:
            return []
        backend = getattr(self.tokenizer, "backend_tokenizer", None)
        if backend is not None:  # a fast tokenizer: skip building Python id lists
            return [len(e.ids) for e in backend.encode_batch(texts, add_special_tokens=False)]
        encoded = self.tokenizer(texts, add_special_tokens=False, return_attention_mask=False)
        return [len(ids) for ids in encoded["input_ids"]]


@functools.lru_cache(maxsize=4)
def chat_counter(model_dir: str, name: str) -> ChatTemplateCounter:
    """The counter for a resolved chat model directory (loaded once per process)."""
    from transformers import AutoTokenizer

    return ChatTemplateCounter(AutoTokenizer.from_pretrained(model_dir), name)
