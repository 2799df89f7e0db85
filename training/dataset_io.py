"""Read a dataset built by ``chatbot data build`` and check it was built for this model.

``<data_dir>/datasets/NAME/`` holds ``dataset/`` (``DatasetDict.save_to_disk`` with ``train`` and
``validation`` splits of ``messages``) and ``manifest.json`` (see the dataset contract). The
manifest's chat template hash must match the tokenizer being trained: a dataset rendered for
another model's template would teach the wrong turn markers.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from training.errors import DatasetError


@dataclass(frozen=True)
class TrainingData:
    name: str
    train: list[list[dict]]
    validation: list[list[dict]]
    manifest: dict
    manifest_sha256: str


def load_training_data(data_dir: Path, name: str) -> TrainingData:
    """The conversations of dataset ``name``; raises :class:`DatasetError` naming the fix."""
    root = Path(data_dir) / "datasets" / name
    manifest_path = root / "manifest.json"
    if not manifest_path.is_file():
        raise DatasetError(f"dataset {name!r} not found ({manifest_path} is missing); build it "
                           "with `chatbot data build` or check --data")
    raw = manifest_path.read_bytes()
    try:
        manifest = json.loads(raw)
    except ValueError as exc:
        raise DatasetError(f"{manifest_path} is not valid JSON ({exc}); rebuild the dataset")
    splits = _load_splits(root / "dataset", name)
    data = TrainingData(name, splits["train"], splits["validation"], manifest,
                        hashlib.sha256(raw).hexdigest())
    if not data.train:
        raise DatasetError(f"dataset {name!r} has no training examples; collect more "
                           "conversations (or loosen the curation filters) and rebuild it")
    if not data.validation:
        raise DatasetError(f"dataset {name!r} has no validation examples, which early stopping "
                           "needs; rebuild it with a validation share")
    return data


def _load_splits(path: Path, name: str) -> dict[str, list[list[dict]]]:
    from datasets import load_from_disk

    try:
        splits = load_from_disk(str(path))
    except (FileNotFoundError, ValueError) as exc:
        raise DatasetError(f"dataset {name!r} has no readable examples at {path} ({exc}); "
                           "rebuild it with `chatbot data build`") from None
    missing = [split for split in ("train", "validation") if split not in splits]
    if missing:
        raise DatasetError(f"dataset {name!r} lacks the split(s) {', '.join(missing)}; "
                           "rebuild it with `chatbot data build`")
    return {split: [[{"role": m["role"], "content": m["content"]} for m in row]
                    for row in splits[split]["messages"]] for split in ("train", "validation")}


def check_built_for(data: TrainingData, template_hash: str, fingerprint: str) -> None:
    """Refuse a dataset built for another chat template (or, when recorded, another model)."""
    recorded = data.manifest.get("chat_template_hash")
    if recorded and recorded != template_hash:
        raise DatasetError(
            f"dataset {data.name!r} was built for chat template {recorded}, but the base model's "
            f"chat template is {template_hash}: it was built with another tokenizer/model; "
            "rebuild it with `chatbot data build` under this config's models.chat")
    recorded = data.manifest.get("chat_model_fingerprint")
    if recorded and recorded != fingerprint:
        raise DatasetError(
            f"dataset {data.name!r} was built for model fingerprint {recorded}, but the base "
            f"model's is {fingerprint}; rebuild it with `chatbot data build` under this "
            "config's models.chat, or train the model it was built for")


def check_prompt_template(data: TrainingData) -> tuple[str | None, str | None]:
    """The prompt template (name, hash) the examples carry; checked against the current file."""
    name, recorded = data.manifest.get("template"), data.manifest.get("template_hash")
    try:
        from chatbot.prompts import load_template
    except ImportError:  # prompts not available in this build: trust the manifest
        return name, recorded
    if name is None:
        return name, recorded
    current = load_template(name).hash
    if recorded and current != recorded:
        raise DatasetError(
            f"dataset {data.name!r} was rendered with prompt template {name!r} at hash "
            f"{recorded}, but that template is now {current}: serving would prompt differently "
            "from training; rebuild the dataset with `chatbot data build`")
    return name, recorded or current
