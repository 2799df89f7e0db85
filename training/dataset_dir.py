"""A dataset directory on disk: the examples (HF ``datasets``), their JSONL, and the manifest.

``<data_dir>/datasets/NAME/``: ``dataset/`` (a ``DatasetDict`` with ``train`` and
``validation``; columns ``conversation_id`` and ``messages``), ``export.jsonl`` (OpenAI
``{"messages": [...]}`` lines), ``review_thumbs_down.jsonl`` and ``manifest.json``, whose
``format`` line is checked on load.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Iterable, Sequence

from training.errors import DataError
from training.transcripts import Conversation

FORMAT = "chatbot-builder dataset v1"
MANIFEST = "manifest.json"


def rows(conversations: Sequence[Conversation]) -> dict[str, list]:
    return {"conversation_id": [c.id for c in conversations],
            "messages": [[{"role": m.role, "content": m.content} for m in c.messages]
                         for c in conversations]}


def examples_sha256(train: Sequence[Conversation], validation: Sequence[Conversation]) -> str:
    """Hash of the examples in split order: two builds trained alike have the same hash."""
    digest = hashlib.sha256()
    for split, conversations in (("train", train), ("validation", validation)):
        for conversation in conversations:
            line = json.dumps([split, conversation.id, [[m.role, m.content]
                                                        for m in conversation.messages]],
                              ensure_ascii=False)
            digest.update(line.encode("utf-8") + b"\n")
    return digest.hexdigest()


def save_examples(directory: Path, train: Sequence[Conversation],
                  validation: Sequence[Conversation]) -> None:
    from datasets import Dataset, DatasetDict, Features, Value, disable_progress_bars

    disable_progress_bars()  # a build prints one summary, not a bar per split
    message = {"role": Value("string"), "content": Value("string")}
    features = Features({"conversation_id": Value("string"), "messages": [message]})
    splits = DatasetDict({
        "train": Dataset.from_dict(rows(train), features=features),
        "validation": Dataset.from_dict(rows(validation), features=features),
    })
    # One shard per split: datasets writes no shard at all for an empty split otherwise, and
    # then cannot load it back.
    splits.save_to_disk(str(directory / "dataset"), num_shards={"train": 1, "validation": 1})


def write_jsonl(path: Path, records: Iterable[dict]) -> int:
    count = 0
    with path.open("w", encoding="utf-8") as out:
        for record in records:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    return count


def export_records(conversations: Iterable[Conversation]) -> Iterable[dict]:
    for conversation in conversations:
        yield {"messages": [{"role": m.role, "content": m.content}
                            for m in conversation.messages]}


def review_records(conversations: Iterable[Conversation]) -> Iterable[dict]:
    for conversation in conversations:
        yield {"conversation_id": conversation.id, "rating": conversation.meta.get("rating"),
               "comment": conversation.meta.get("comment"),
               "messages": [{"role": m.role, "content": m.content}
                            for m in conversation.messages]}


def read_manifest(directory: Path) -> dict:
    path = directory / MANIFEST
    if not path.is_file():
        raise DataError(f"{directory} is not a dataset (no {MANIFEST}); build one with "
                        "`chatbot data build --name NAME --from FILE`")
    manifest = json.loads(path.read_text(encoding="utf-8"))
    if manifest.get("format") != FORMAT:
        raise DataError(f"{path}: format {manifest.get('format')!r}, expected {FORMAT!r}; "
                        "rebuild the dataset with this version of chatbot-builder")
    return manifest


def load_examples(directory: Path):
    """The ``DatasetDict`` of a dataset directory (manifest checked first)."""
    read_manifest(directory)
    from datasets import load_from_disk

    return load_from_disk(str(directory / "dataset"))
