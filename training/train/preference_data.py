"""The rows a preference run trains on: a preference dataset's DPO pairs or KTO rows, checked.

``chatbot data build --kind preference`` writes both kinds (``training/data/preference.py``);
DPO reads the pairs, KTO the unpaired rows. A dataset that cannot teach the objective (no pairs,
or KTO rows of one label only) is refused here, before any model is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from chatbot.paths import DataPaths
from training.errors import DatasetError

OBJECTIVES = ("dpo", "kto")


@dataclass(frozen=True)
class PreferenceRows:
    """Per split, the rows in TRL's conversational format, and what the manifest records."""

    name: str
    objective: str
    train: list[dict]
    validation: list[dict]
    manifest: object
    """The dataset's ``DatasetManifest`` (``check_built_for`` reads its model fields)."""
    manifest_sha256: str

    def counts(self) -> dict[str, dict[str, int]]:
        """Rows per split; for KTO also how many are desirable (label true)."""
        counts = {}
        for split, rows in (("train", self.train), ("validation", self.validation)):
            counts[split] = {"rows": len(rows)}
            if self.objective == "kto":
                counts[split]["desirable"] = sum(row["label"] for row in rows)
        return counts


def load_preference_rows(data_dir: Path, name: str, objective: str) -> PreferenceRows:
    """The rows ``objective`` trains on; raises :class:`DatasetError` naming the fix."""
    import hashlib

    from training.data.preference import load_preference_dataset

    root = DataPaths(data_dir).dataset(name)
    if not (root / "manifest.json").is_file():
        raise DatasetError(f"dataset {name!r} not found ({root / 'manifest.json'} is missing); "
                           "build it with `chatbot data build --kind preference` or check --data")
    data = load_preference_dataset(root)
    if objective == "dpo":
        splits = {split: [pair.as_trl() for pair in data.dpo[split]] for split in data.dpo}
        _check_dpo(name, splits)
    elif objective == "kto":
        splits = {split: [row.as_trl() for row in data.kto[split]] for split in data.kto}
        _check_kto(name, splits)
    else:
        raise DatasetError(f"unknown preference method {objective!r}; use one of "
                           f"{', '.join(OBJECTIVES)}")
    return PreferenceRows(name, objective, splits["train"], splits["validation"], data.manifest,
                          hashlib.sha256((root / "manifest.json").read_bytes()).hexdigest())


def _check_dpo(name: str, splits: dict[str, list[dict]]) -> None:
    if not splits["train"]:
        raise DatasetError(
            f"dataset {name!r} has no DPO pairs (a chosen and a rejected answer to the same "
            "prompt: corrections and arena votes make them); collect some, or train on the "
            "thumbs with --method kto")
    if not splits["validation"]:
        raise DatasetError.no_validation(name, "pairs")


def _check_kto(name: str, splits: dict[str, list[dict]]) -> None:
    rows = splits["train"]
    desirable = sum(row["label"] for row in rows)
    if not rows:
        raise DatasetError(f"dataset {name!r} has no KTO rows (answers rated up or down); "
                           "collect feedback and rebuild it")
    if desirable == 0:
        raise DatasetError(
            f"dataset {name!r} has no desirable rows (thumbs-up or corrected answers) among its "
            f"{len(rows)} training rows; KTO needs both kinds: collect some, or train on the "
            "corrections with --method dpo")
    if desirable == len(rows):
        raise DatasetError(
            f"dataset {name!r} has no undesirable rows (thumbs-down answers) among its "
            f"{len(rows)} training rows; KTO needs both kinds: collect some, or fine-tune on "
            "the good answers with --method lora")
    if not splits["validation"]:
        raise DatasetError.no_validation(name, "rows")
