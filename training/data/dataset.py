"""A dataset on disk: its examples, their JSONL, and its manifest, saved, loaded and checked.

``<data_dir>/datasets/NAME/``: ``dataset/`` (a ``DatasetDict`` with ``train`` and ``validation``;
columns ``conversation_id`` and ``messages``), ``export.jsonl`` (OpenAI ``{"messages": [...]}``
lines), ``review_thumbs_down.jsonl`` and ``manifest.json`` (:class:`DatasetManifest`). Training
checks the manifest's chat template hash against the tokenizer it trains: a dataset rendered for
another model's template would teach the wrong turn markers.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable, Iterable, Sequence

from chatbot.models import model_shape
from chatbot.paths import DataPaths
from chatbot.types import Message
from index import jsonfile
from training.data.transcripts import Conversation
from training.errors import DataError, DatasetError

MANIFEST = "manifest.json"
SCHEMA_VERSION = 1
FORMAT = "chatbot-builder dataset v{}"
"""How ``schema_version`` is stored: the manifest's ``format`` line."""
_FORMAT = re.compile(r"^chatbot-builder dataset v(\d+)$")
REBUILD = "rebuild the dataset with `chatbot data build`"


@dataclass(frozen=True)
class DatasetManifest:
    """``manifest.json``: what a dataset was built from, for which model, and its counts."""

    name: str
    created_at: str | None = None
    sources: list = field(default_factory=list)
    options: dict = field(default_factory=dict)
    steps: list = field(default_factory=list)
    counts: dict = field(default_factory=dict)
    pii: dict = field(default_factory=dict)
    pii_detector: str | None = None
    tokens: dict = field(default_factory=dict)
    chat_model: str | None = None
    chat_model_fingerprint: str | None = None
    chat_template_hash: str | None = None
    template: str | None = None
    """The prompt template the examples were rendered with."""
    template_hash: str | None = None
    render_with_template: bool | None = None
    sha256: str | None = None
    """:func:`examples_sha256` of the splits."""
    kind: str = "sft"
    """``sft`` (conversations in ``dataset/``) or ``preference`` (``training.data.preference``)."""
    files: dict = field(default_factory=dict)
    """Of a preference dataset: which file holds which rows, per kind and split."""
    schema_version: int = SCHEMA_VERSION

    @classmethod
    def load(cls, directory: Path) -> DatasetManifest:
        path = directory / MANIFEST
        if not path.is_file():
            raise DataError(f"{directory} is not a dataset (no {MANIFEST}); build one with "
                            "`chatbot data build --name NAME --from FILE`")
        data = jsonfile.read(path, DataError, REBUILD)
        version = _version(data.pop("format", FORMAT.format(1)))  # none recorded: 1
        jsonfile.check_version(path, version, SCHEMA_VERSION, DataError, REBUILD)
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})

    def save(self, directory: Path) -> Path:
        path = directory / MANIFEST
        jsonfile.write_atomic(path, self.to_json())
        return path

    def to_json(self) -> dict:
        """The manifest as it is on disk (and as ``chatbot data show --json`` prints it)."""
        record = asdict(self)
        return {"format": FORMAT.format(record.pop("schema_version")), **record}


def _version(found: object) -> object:
    match = _FORMAT.match(found) if isinstance(found, str) else None
    return int(match.group(1)) if match else found


def rows(conversations: Sequence[Conversation]) -> dict[str, list]:
    return {"conversation_id": [c.id for c in conversations],
            "messages": [[{"role": m.role, "content": m.content, "weight": m.weight}
                          for m in c.messages] for c in conversations]}


def examples_sha256(train: Sequence[Conversation], validation: Sequence[Conversation]) -> str:
    """Hash of the examples in split order: two builds trained alike have the same hash."""
    digest = hashlib.sha256()
    for split, conversations in (("train", train), ("validation", validation)):
        for conversation in conversations:
            line = json.dumps([split, conversation.id, [
                [m.role, m.content, *([] if m.weight is None else [m.weight])]
                for m in conversation.messages]],
                              ensure_ascii=False)
            digest.update(line.encode("utf-8") + b"\n")
    return digest.hexdigest()


def save_examples(directory: Path, train: Sequence[Conversation],
                  validation: Sequence[Conversation]) -> None:
    from datasets import Dataset, DatasetDict, Features, Value, disable_progress_bars

    disable_progress_bars()  # a build prints one summary, not a bar per split
    message = {"role": Value("string"), "content": Value("string"), "weight": Value("int8")}
    features = Features({"conversation_id": Value("string"), "messages": [message]})
    splits = DatasetDict({
        "train": Dataset.from_dict(rows(train), features=features),
        "validation": Dataset.from_dict(rows(validation), features=features),
    })
    # One shard per split: datasets writes no shard at all for an empty split otherwise, and
    # then cannot load it back.
    splits.save_to_disk(str(directory / "dataset"), num_shards={"train": 1, "validation": 1})


def write_directory(target: Path, overwrite: bool, fill: Callable[[Path], None]) -> None:
    """``fill`` a temporary directory beside ``target``, then rename it to ``target``: a failed
    build leaves nothing behind and an existing dataset stays until the new one is complete."""
    root = target.parent
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=root))
    try:
        fill(work)
        if target.exists() and overwrite:
            shutil.rmtree(target)
        try:
            work.rename(target)
        except OSError:
            if not target.exists():
                raise
            raise DataError(f"dataset {target.name!r} was written at {target} by another build "
                            "while this one ran; this build was not kept: build again with "
                            "--overwrite to replace it") from None
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


def write_jsonl(path: Path, records: Iterable[dict]) -> int:
    count = 0
    with path.open("w", encoding="utf-8") as out:
        for record in records:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    return count


def export_records(conversations: Iterable[Conversation]) -> Iterable[dict]:
    for conversation in conversations:
        yield {"messages": [m.as_dict() for m in conversation.messages]}


def review_records(conversations: Iterable[Conversation]) -> Iterable[dict]:
    for conversation in conversations:
        yield {"conversation_id": conversation.id, "rating": conversation.meta.get("rating"),
               "comment": conversation.meta.get("comment"),
               "messages": [m.as_dict() for m in conversation.messages]}


def load_examples(directory: Path):
    """The ``DatasetDict`` of a dataset directory (manifest checked first)."""
    DatasetManifest.load(directory)
    from datasets import load_from_disk

    return load_from_disk(str(directory / "dataset"))


@dataclass(frozen=True)
class TrainingData:
    name: str
    train: list[list[dict]]
    validation: list[list[dict]]
    manifest: DatasetManifest
    manifest_sha256: str


def load_training_data(data_dir: Path, name: str) -> TrainingData:
    """The conversations of dataset ``name``; raises :class:`DatasetError` naming the fix."""
    root = DataPaths(data_dir).dataset(name)
    manifest_path = root / MANIFEST
    if not manifest_path.is_file():
        raise DatasetError(f"dataset {name!r} not found ({manifest_path} is missing); build it "
                           "with `chatbot data build` or check --data")
    try:
        manifest = DatasetManifest.load(root)
    except DataError as exc:
        raise DatasetError(str(exc)) from None
    if manifest.kind != "sft":
        trainers = ("`chatbot train --method dpo` or `--method kto` trains on it; "
                    if manifest.kind == "preference" else "")
        raise DatasetError(f"dataset {name!r} is a {manifest.kind} dataset: {trainers}"
                           "supervised fine-tuning needs one built by `chatbot data build` "
                           "without --kind")
    splits = _load_splits(root / "dataset", name)
    data = TrainingData(name, splits["train"], splits["validation"], manifest,
                        hashlib.sha256(manifest_path.read_bytes()).hexdigest())
    if not data.train:
        raise DatasetError(f"dataset {name!r} has no training examples; collect more "
                           "conversations (or loosen the curation filters) and rebuild it")
    if not data.validation:
        raise DatasetError.no_validation(name, "examples")
    return data


def _load_splits(path: Path, name: str) -> dict[str, list[list[dict]]]:
    from datasets import load_from_disk

    try:
        splits = load_from_disk(str(path))
    except IndexError:  # datasets cannot load a split saved with zero rows
        raise DatasetError(f"dataset {name!r} has an empty split at {path}: no examples to train "
                           "or validate on; collect more conversations (or loosen the curation "
                           "filters) and rebuild it") from None
    except (FileNotFoundError, ValueError) as exc:
        raise DatasetError(f"dataset {name!r} has no readable examples at {path} ({exc}); "
                           "rebuild it with `chatbot data build`") from None
    missing = [split for split in ("train", "validation") if split not in splits]
    if missing:
        raise DatasetError(f"dataset {name!r} lacks the split(s) {', '.join(missing)}; "
                           "rebuild it with `chatbot data build`")
    return {split: [[Message(m["role"], m["content"], m.get("weight")).as_dict() for m in row]
                    for row in splits[split]["messages"]] for split in ("train", "validation")}


def check_built_for(data: TrainingData, template_hash: str, fingerprint: str) -> None:
    """Refuse a dataset built for another chat template (or, when recorded, another model)."""
    recorded = data.manifest.chat_template_hash
    if recorded and recorded != template_hash:
        raise DatasetError(
            f"dataset {data.name!r} was built for chat template {recorded}, but the base model's "
            f"chat template is {template_hash}: it was built with another tokenizer/model; "
            "rebuild it with `chatbot data build` under this config's models.chat")
    recorded = data.manifest.chat_model_fingerprint
    if recorded and model_shape(recorded) != model_shape(fingerprint):  # its tokens, not weights
        raise DatasetError(
            f"dataset {data.name!r} was built for model fingerprint {recorded}, but the base "
            f"model's is {fingerprint}; rebuild it with `chatbot data build` under this "
            "config's models.chat, or train the model it was built for")


def check_prompt_template(data: TrainingData) -> tuple[str | None, str | None]:
    """The prompt template (name, hash) the examples carry; checked against the current file."""
    name, recorded = data.manifest.template, data.manifest.template_hash
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
