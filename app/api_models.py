"""The model cards of ``/v1/models``: one per variant, and ``ab`` while A/B is on."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from app.api_schema import RequestError, echoed
from chatbot.adapters import ADAPTER_MANIFEST
from chatbot.engine import Engine
from chatbot.errors import ConfigError, ModelError
from chatbot.variants import Variant

AB_MODEL = "ab"
"""With A/B on, ``model="ab"`` answers with the session's sticky variant, its name not shown."""


def model_card(engine: Engine, variant: Variant, served_since: int) -> dict:
    """A variant as OpenAI lists a model, with what the bot adds: its base model, adapter,
    template, retrieval and context window (vLLM's ``max_model_len``). ``served_since``: when
    the server began, the ``created`` of a variant without files here (see ``_created``)."""
    from app.api_tokenize import max_model_len

    return {"id": variant.name, "object": "model",
            "created": _created(engine, variant) or served_since, "owned_by": engine.bot_name,
            "base_model": variant.model, "adapter": variant.adapter_id,
            "template": variant.template, "retrieval": variant.retrieval,
            "default": variant.name == engine.default_variant,
            "max_model_len": max_model_len(engine, variant)}


def ab_card(engine: Engine, served_since: int) -> dict:
    """The ``ab`` model, listed while A/B is on (since the server began)."""
    return {"id": AB_MODEL, "object": "model", "created": served_since,
            "owned_by": engine.bot_name, "ab": True, "default": False}


def system_fingerprint(engine: Engine, variant: Variant) -> str | None:
    """OpenAI's ``system_fingerprint``: what an answer depends on besides its request (the base
    weights, the adapter as registered, the template and retrieval), so a client knows when the
    same ``seed`` may no longer give the same answer; ``None`` when the model can't load."""
    try:
        weights = engine.generator_for(variant).fingerprint
    except (ModelError, ConfigError):  # the answer reports it
        return None
    adapter = (variant.adapter_id, _created(engine, variant)) if variant.adapter_dir else None
    made_of = [weights, adapter, variant.template, variant.retrieval, variant.k]
    return "fp_" + hashlib.sha256(json.dumps(made_of).encode()).hexdigest()[:12]


def _created(engine: Engine, variant: Variant) -> int | None:
    """When the variant's files were written: its adapter's manifest (written as the adapter
    is registered), else its base model's config; ``None`` for a model without files here (a
    remote backend's, a missing adapter). File times stay put, so every request says the same."""
    from app.api_tokenize import base_generator

    if variant.adapter_dir is not None:
        made = variant.adapter_dir / ADAPTER_MANIFEST
    else:
        try:
            folder = getattr(base_generator(engine, variant), "model_path", None)
        except (ModelError, ConfigError):
            return None
        made = Path(folder) / "config.json" if folder else None
    return int(made.stat().st_mtime) if made is not None and made.is_file() else None


def unknown_model(engine: Engine, name: str) -> RequestError:
    return RequestError(f"the model {echoed(name)!r} does not exist; this bot's models (variants) "
                        f"are: {', '.join(engine.variants)}", param="model",
                        code="model_not_found", status=404)
