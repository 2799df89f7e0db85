"""The model cards of ``/v1/models``: one per variant, and ``ab`` while A/B is on."""

from __future__ import annotations

from app.api_schema import RequestError, echoed
from chatbot.engine import Engine
from chatbot.variants import Variant

AB_MODEL = "ab"
"""With A/B on, ``model="ab"`` answers with the session's sticky variant, its name not shown."""


def model_card(engine: Engine, variant: Variant) -> dict:
    """A variant as OpenAI lists a model, with what the bot adds: its base model, adapter,
    template, retrieval and context window (vLLM's ``max_model_len``)."""
    from app.api_tokenize import max_model_len

    return {"id": variant.name, "object": "model", "created": 0, "owned_by": engine.bot_name,
            "base_model": variant.model, "adapter": variant.adapter_id,
            "template": variant.template, "retrieval": variant.retrieval,
            "default": variant.name == engine.default_variant,
            "max_model_len": max_model_len(engine, variant)}


def ab_card(engine: Engine) -> dict:
    """The ``ab`` model, listed while A/B is on."""
    return {"id": AB_MODEL, "object": "model", "created": 0, "owned_by": engine.bot_name,
            "ab": True, "default": False}


def unknown_model(engine: Engine, name: str) -> RequestError:
    return RequestError(f"the model {echoed(name)!r} does not exist; this bot's models (variants) "
                        f"are: {', '.join(engine.variants)}", param="model",
                        code="model_not_found", status=404)
