"""The records that pass between the engine and the surfaces around it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from index.types import Hit

if TYPE_CHECKING:
    from chatbot.attribution import Attribution


@dataclass(frozen=True)
class Message:
    role: str
    """``system``, ``user`` or ``assistant``."""
    content: str
    weight: int | None = None
    """On an assistant message of a training example, as in OpenAI's fine-tuning format: 0 keeps
    it as context only (never learned), 1 or ``None`` learns it."""

    @property
    def learned(self) -> bool:
        """An assistant message a training example learns (context ones have ``weight`` 0)."""
        return self.role == "assistant" and self.weight != 0

    def as_dict(self) -> dict:
        return ({"role": self.role, "content": self.content}
                | ({"weight": self.weight} if self.weight is not None else {}))


@dataclass(frozen=True)
class Reply:
    """One answer with everything needed to explain and reproduce it."""

    text: str
    messages: list[Message]
    """The exact messages the model was given."""
    hits: list[Hit]
    variant: str
    model_id: str
    adapter_id: str | None
    timings: dict[str, float] = field(default_factory=dict)
    """``query_ms``, ``retrieval_ms``, ``prompt_ms``, ``first_token_ms``, ``total_ms``,
    ``tokens``, ``tokens_per_s``."""
    refused: bool = False
    """True when the no-hits policy answered instead of the model."""
    filtered: list[str] = field(default_factory=list)
    """Names of the output filters that changed the text."""
    turn_id: int | None = None
    """The logged assistant turn (``None`` with logging off)."""
    prompt_tokens: int = 0
    """Tokens of ``messages`` as the model read them (0 when refused); the generated tokens
    are ``timings["tokens"]``."""
    retrieval_query: str | None = None
    """What the documents were searched with: the question, joined with or rewritten from
    the turns it refers back to (``None`` when the answer searched nothing)."""
    attribution: Attribution | None = None
    """Which source sentences back each sentence (``chatbot.attribution``); ``None`` with
    attribution off, or for an answer refused or not finished."""
    reached_token_limit: bool = False
    """The answer ended because it reached ``max_new_tokens``, not at the model's end of
    text or a stop string (OpenAI's ``finish_reason`` ``length``)."""

    def sources(self) -> list[dict]:
        return [hit_record(hit) for hit in self.hits]

    def as_dict(self) -> dict:
        return {"text": self.text, "variant": self.variant, "model": self.model_id,
                "adapter": self.adapter_id, "sources": self.sources(),
                "messages": [m.as_dict() for m in self.messages], "timings": self.timings,
                "refused": self.refused, "filtered": self.filtered, "turn_id": self.turn_id,
                "retrieval_query": self.retrieval_query,
                "attribution": self.attribution.as_dict(public=True) if self.attribution
                else None}


def hit_record(hit: Hit) -> dict:
    """A hit as plain data, for logs, JSON output and the API."""
    return {"n": hit.rank, "chunk_id": hit.chunk.chunk_id, "source": hit.source,
            "location": hit.location, "score": round(float(hit.score), 4), "text": hit.text}


__all__ = ["Message", "Reply", "hit_record"]
