"""Variants: the named ways a bot answers (base model or backend, adapter, prompt template,
retrieval).

Variants come from the config and from every adapter registered under
``<data_dir>/adapters/NAME/``, so a freshly trained adapter is servable at once. An adapter is
checked against its manifest (``chatbot.adapters``) before it is served.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Variant:
    name: str
    model: str
    """The chat model's config name (``embedded:...``, hub id or path)."""
    template: str
    retrieval: bool
    k: int | None = None
    adapter_dir: Path | None = None
    backend: str | None = None
    """The OpenAI-compatible server that generates it (``chatbot.remote``); ``None``: here."""

    @property
    def adapter_id(self) -> str | None:
        return self.adapter_dir.name if self.adapter_dir else None
