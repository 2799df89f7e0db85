"""Chat messages to ``(input_ids, labels)`` with the serving chat template and a masking policy.

The example is rendered with the tokenizer's own chat template, exactly as serving renders the
conversation, and only assistant tokens are supervised (labels are -100 elsewhere). Many chat
templates (SmolLM2's among them) have no generation markers, so the assistant spans are found by
rendering the conversation incrementally: the prefix up to an assistant turn with the generation
prompt, then the prefix including that turn. The token ids of the first must be a prefix of the
second (checked, never assumed); the difference is the assistant's span.

What is supervised in a span: the assistant's text and the end-of-turn token that follows it
(``<|im_end|>`` for SmolLM2), so the model learns to stop; template text after the end-of-turn
token (SmolLM2's trailing newline) is not, since serving never generates it.

    python -c "from training.train.tokenize import render_example; help(render_example)"
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

from training.errors import DatasetError

IGNORE = -100
MaskingPolicy = Literal["all_assistant", "last_assistant"]
POLICIES: tuple[str, ...] = ("all_assistant", "last_assistant")


@dataclass(frozen=True)
class RenderedExample:
    """One conversation as token ids; ``labels[i]`` is the target at ``i`` or -100."""

    input_ids: tuple[int, ...]
    labels: tuple[int, ...]

    @property
    def supervised(self) -> int:
        return sum(label != IGNORE for label in self.labels)


def render_example(messages: Sequence[dict], tokenizer, policy: MaskingPolicy = "all_assistant"
                   ) -> tuple[list[int], list[int]]:
    """Token ids of ``messages`` rendered by the chat template, and labels for assistant turns.

    ``policy``: ``all_assistant`` supervises every assistant turn, ``last_assistant`` only the
    last one (the earlier ones stay in the context); a turn with ``"weight": 0`` (OpenAI's
    fine-tuning format) is context under either. Raises :class:`DatasetError` when there is no
    assistant turn to learn, or when the template breaks the prefix property.

    >>> ids, labels = render_example([{"role": "user", "content": "Hi"},
    ...                               {"role": "assistant", "content": "Hello"}], tok)
    """
    if policy not in POLICIES:
        raise DatasetError(f"unknown masking policy {policy!r}; use one of {', '.join(POLICIES)}")
    turns = [index for index, message in enumerate(messages)
             if message["role"] == "assistant" and message.get("weight") != 0]
    if not turns:
        raise DatasetError("the conversation has no assistant turn to learn (none, or all of "
                           "weight 0), so nothing can be learned from it; drop it from the "
                           "dataset")
    if policy == "last_assistant":
        turns = turns[-1:]
    full = _encode(tokenizer, messages, generation_prompt=False)
    labels = [IGNORE] * len(full)
    for index in turns:
        start, end = _assistant_span(tokenizer, messages, index, full)
        labels[start:end] = full[start:end]
    return full, labels


def _assistant_span(tokenizer, messages: Sequence[dict], index: int,
                    full: list[int]) -> tuple[int, int]:
    """Token positions ``[start, end)`` of assistant turn ``index`` and its end-of-turn token."""
    before = _encode(tokenizer, messages[:index], generation_prompt=True)
    through = _encode(tokenizer, messages[: index + 1], generation_prompt=False)
    for shorter, longer, what in ((before, through, "the turn"), (through, full, "the rest")):
        if longer[: len(shorter)] != shorter:
            raise DatasetError(
                f"the chat template does not render message {index} (assistant) as a prefix of "
                f"{what}: its tokens change when the conversation continues, so assistant spans "
                "cannot be located; check the message's leading/trailing whitespace")
    start, end = len(before), len(through)
    return start, start + _through_end_of_turn(tokenizer, through[start:end])


def _through_end_of_turn(tokenizer, span: list[int]) -> int:
    """Length of ``span`` up to and including its end-of-turn token (all of it if none)."""
    special = set(tokenizer.all_special_ids)
    for position in range(len(span) - 1, -1, -1):
        if span[position] in special:
            return position + 1
    return len(span)


def _encode(tokenizer, messages: Sequence[dict], generation_prompt: bool) -> list[int]:
    if not messages:
        return []
    text = tokenizer.apply_chat_template(
        [{"role": m["role"], "content": m["content"]} for m in messages],
        tokenize=False, add_generation_prompt=generation_prompt)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def render_all(conversations: Sequence[Sequence[dict]], tokenizer, policy: MaskingPolicy,
               max_seq_len: int, what: str = "dataset") -> tuple[list[RenderedExample], dict]:
    """Render and truncate every conversation; a report of what was kept, cut and dropped.

    A conversation longer than ``max_seq_len`` is cut at the right; one left with no supervised
    token is dropped. Zero supervised tokens in the whole set is an error, not a silent no-op.
    """
    examples, cut, dropped, tokens = [], 0, 0, 0
    for position, messages in enumerate(conversations):
        try:
            ids, labels = render_example(messages, tokenizer, policy)
        except DatasetError as exc:
            raise DatasetError(f"{what}, example {position}: {exc}") from None
        if len(ids) > max_seq_len:
            cut += 1
            ids, labels = ids[:max_seq_len], labels[:max_seq_len]
        example = RenderedExample(tuple(ids), tuple(labels))
        if example.supervised == 0:
            dropped += 1
            continue
        tokens += len(ids)
        examples.append(example)
    supervised = sum(example.supervised for example in examples)
    if supervised == 0:
        raise DatasetError(f"{what} has no supervised (assistant) tokens in {len(conversations)} "
                           f"examples at max_seq_len={max_seq_len}; add conversations with "
                           "assistant answers or raise --max-seq-len")
    report = {"examples": len(examples), "truncated": cut, "dropped_no_supervised": dropped,
              "tokens": tokens, "supervised_tokens": supervised,
              "supervised_share": round(supervised / tokens, 4)}
    return examples, report
