"""OpenAI's ``presence_penalty`` and ``frequency_penalty`` for the model run here, as OpenAI
documents them: before sampling, each token's logit is lowered by ``frequency_penalty`` for
each time the answer has used it so far and by ``presence_penalty`` once if it has used it at
all. Only the answer's tokens count, not the prompt's (vLLM counts them so too). Positive values
discourage repeats; negative ones, down to -2, encourage them.

``TransformersGenerator`` applies them through ``generate``'s logits processors,
``BatchingTransformersGenerator`` in its own sampler: both after the repetition penalty and
before the temperature, so the two give the same answers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # chatbot.generate applies them
    from chatbot.generate import GenerationSettings


def penalizes(settings: GenerationSettings) -> bool:
    return bool(settings.presence_penalty or settings.frequency_penalty)


def penalized(logits, answer_tokens, settings: GenerationSettings):
    """``logits`` (a row, or rows of one batch of answers as long) lowered for
    ``answer_tokens`` (the tokens each answer has so far, a long tensor)."""
    import torch

    counts = torch.zeros_like(logits)
    counts.scatter_add_(-1, answer_tokens, torch.ones_like(answer_tokens, dtype=logits.dtype))
    return (logits - settings.frequency_penalty * counts
            - settings.presence_penalty * (counts > 0).to(logits.dtype))


def penalties_processors(prompt_len: int, settings: GenerationSettings):
    """``generate``'s ``logits_processor`` for prompts of ``prompt_len`` tokens."""
    from transformers import LogitsProcessor, LogitsProcessorList

    class Penalties(LogitsProcessor):
        def __call__(self, input_ids, scores):
            return penalized(scores, input_ids[:, prompt_len:], settings)

    return LogitsProcessorList([Penalties()])
