"""Variants: the named ways a bot answers (base model, adapter, prompt template, retrieval).

Variants come from the config and from every adapter registered under
``<data_dir>/adapters/NAME/``, so a freshly trained adapter is servable at once. An adapter is
checked against its manifest before it is served: trained on another base model or chat
template, it is refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from chatbot.errors import ModelError

ADAPTER_MANIFEST = "adapter_manifest.json"


@dataclass(frozen=True)
class Variant:
    name: str
    model: str
    """The chat model's config name (``embedded:...``, hub id or path)."""
    template: str
    retrieval: bool
    k: int | None = None
    adapter_dir: Path | None = None

    @property
    def adapter_id(self) -> str | None:
        return self.adapter_dir.name if self.adapter_dir else None


def adapter_manifest(adapter_dir: Path) -> dict:
    """The manifest of an adapter directory, or a clear error naming what is missing."""
    if not adapter_dir.is_dir():
        raise ModelError(f"adapter directory {adapter_dir} does not exist; train one with "
                         f"`chatbot train --data DATASET --name {adapter_dir.name}`")
    path = adapter_dir / ADAPTER_MANIFEST
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelError(f"{path} is missing: {adapter_dir} was not written by "
                         "`chatbot train`, or its training did not finish") from None
    except ValueError as exc:
        raise ModelError(f"{path} is not valid JSON ({exc}); retrain the adapter") from exc


def registered_adapters(adapters_root: Path) -> dict[str, Path]:
    """Adapter directories that carry a manifest, by name."""
    if not adapters_root.is_dir():
        return {}
    return {path.parent.name: path.parent
            for path in sorted(adapters_root.glob(f"*/{ADAPTER_MANIFEST}"))}


def check_adapter(manifest: dict, adapter_dir: Path, base_fingerprint: str,
                  template_hash: str) -> None:
    """Refuse an adapter trained on another base model or chat template than it is served on."""
    trained_on = manifest.get("base_model_fingerprint")
    if trained_on != base_fingerprint:
        raise ModelError(
            f"adapter {adapter_dir} was trained on base model {manifest.get('base_model')!r} "
            f"(fingerprint {trained_on}), not on this variant's model (fingerprint "
            f"{base_fingerprint}); serve it on its own base model or retrain it")
    if manifest.get("chat_template_hash") != template_hash:
        raise ModelError(
            f"adapter {adapter_dir} was trained with another chat template "
            f"({manifest.get('chat_template_hash')} vs {template_hash}); retrain it on this "
            "model's tokenizer")
