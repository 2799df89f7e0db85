"""A preference dataset on disk: KTO rows and DPO pairs in TRL's conversational formats.

``chatbot data build --kind preference`` writes ``<data_dir>/datasets/NAME/``:

- ``manifest.json``: a :class:`~training.data.dataset.DatasetManifest` with ``kind ==
  "preference"`` and ``files == {"kto": {"train": "kto_train.jsonl", "validation": ...},
  "dpo": {"train": "dpo_train.jsonl", "validation": ...}}`` (:data:`FILES`), and the counts.
- ``kto_<split>.jsonl``: unpaired rows, one JSON object a line, exactly TRL's keys::

      {"prompt": [{"role": "system", ...}, ..., {"role": "user", ...}],
       "completion": [{"role": "assistant", "content": "..."}], "label": true}

  ``label`` is true for a thumbed-up answer or a correction, false for a thumbed-down one.
- ``dpo_<split>.jsonl``: pairs with the same prompt for both answers::

      {"prompt": [...], "chosen": [{"role": "assistant", ...}],
       "rejected": [{"role": "assistant", ...}]}

  chosen is a correction (rejected: the original answer) or an arena winner (rejected: the
  loser, when both were sent the same messages).
- ``data_report.md``: counts and balance.

The prompt is the exact list of messages the model was sent when it answered, PII redacted.
TRL's ``KTOTrainer`` / ``DPOTrainer`` take ``datasets.Dataset.from_list(rows)`` of
:meth:`KTORow.as_trl` / :meth:`DPOPair.as_trl` directly::

    data = load_preference_dataset(path)
    train = Dataset.from_list([row.as_trl() for row in data.kto["train"]])
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from training.data.dataset import DatasetManifest, write_jsonl
from training.errors import DataError, DatasetError

KIND = "preference"
SPLITS = ("train", "validation")
FILES = {kind: {split: f"{kind}_{split}.jsonl" for split in SPLITS} for kind in ("kto", "dpo")}
"""Which file holds which rows; recorded in the manifest's ``files``."""


def _messages(value: object, where: str) -> tuple[dict, ...]:
    if not isinstance(value, list) or not all(
            isinstance(m, dict) and isinstance(m.get("role"), str)
            and isinstance(m.get("content"), str) for m in value):
        raise DatasetError(f"{where}: expected a list of {{role, content}} messages")
    return tuple({"role": m["role"], "content": m["content"]} for m in value)


def _answer(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


@dataclass(frozen=True)
class KTORow:
    """One answer judged alone: desirable (``label`` true) or not."""

    prompt: tuple[dict, ...]
    completion: str
    label: bool

    def as_trl(self) -> dict:
        return {"prompt": list(self.prompt), "completion": _answer(self.completion),
                "label": self.label}

    @classmethod
    def from_trl(cls, row: dict, where: str) -> KTORow:
        if not isinstance(row.get("label"), bool):
            raise DatasetError(f"{where}: 'label' must be true or false")
        return cls(_messages(row.get("prompt"), where),
                   _messages(row.get("completion"), where)[-1]["content"], row["label"])


@dataclass(frozen=True)
class DPOPair:
    """Two answers to one prompt, the better one ``chosen``."""

    prompt: tuple[dict, ...]
    chosen: str
    rejected: str

    def as_trl(self) -> dict:
        return {"prompt": list(self.prompt), "chosen": _answer(self.chosen),
                "rejected": _answer(self.rejected)}

    @classmethod
    def from_trl(cls, row: dict, where: str) -> DPOPair:
        return cls(_messages(row.get("prompt"), where),
                   _messages(row.get("chosen"), where)[-1]["content"],
                   _messages(row.get("rejected"), where)[-1]["content"])


@dataclass(frozen=True)
class PreferenceDataset:
    name: str
    kto: dict[str, list[KTORow]]
    """Per split (``train``, ``validation``), the unpaired rows."""
    dpo: dict[str, list[DPOPair]]
    """Per split, the pairs."""
    manifest: DatasetManifest


def save_preference_rows(directory: Path, kto: dict[str, list[KTORow]],
                         dpo: dict[str, list[DPOPair]]) -> dict:
    """Write the rows of each split; return the manifest's ``files``."""
    for kind, rows in (("kto", kto), ("dpo", dpo)):
        for split in SPLITS:
            write_jsonl(directory / FILES[kind][split], (r.as_trl() for r in rows[split]))
    return FILES


def load_preference_dataset(path: Path) -> PreferenceDataset:
    """The rows of the preference dataset at ``path``; a clear error for anything else."""
    manifest = DatasetManifest.load(path)
    if manifest.kind != KIND:
        raise DatasetError(f"dataset {manifest.name!r} is a {manifest.kind} dataset, not a "
                           "preference one; build one with `chatbot data build --kind "
                           "preference`")
    files = manifest.files or FILES
    return PreferenceDataset(
        manifest.name,
        {split: _read(path / files["kto"][split], KTORow.from_trl) for split in SPLITS},
        {split: _read(path / files["dpo"][split], DPOPair.from_trl) for split in SPLITS},
        manifest)


def _read(path: Path, parse) -> list:
    if not path.is_file():
        raise DatasetError(f"{path} is missing; rebuild the dataset with `chatbot data build "
                           "--kind preference`")
    rows = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            where = f"{path}:{number}"
            try:
                rows.append(parse(json.loads(line), where))
            except (json.JSONDecodeError, AttributeError) as exc:
                raise DataError(f"{where}: not a JSON object ({exc})") from None
    return rows
