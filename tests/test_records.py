"""The artifact records: files written by earlier versions still load; unknown versions and
broken files fail with an error that names the file and what to do."""

from __future__ import annotations

import json

import pytest

from chatbot.adapters import ADAPTER_MANIFEST, AdapterManifest
from chatbot.errors import InputError, ModelError
from training.data.dataset import DatasetManifest
from training.errors import DataError
from training.eval.result import EvalRecord

ADAPTER_AS_WRITTEN = {  # adapter_manifest.json as `chatbot train` wrote it before the records
    "format": 1, "name": "zorb", "method": "lora", "base_model": "embedded:smollm2-135m",
    "base_model_fingerprint": "f" * 16, "chat_template_hash": "c" * 16, "template": "rag",
    "template_hash": "t" * 16, "dataset": {"name": "facts", "manifest_sha256": "m" * 64,
                                            "examples_sha256": "e" * 64},
    "hyperparameters": {"lora_r": 8}, "best_step": 4, "metrics": {"best_val_loss": 1.5},
    "created_at": "2026-01-01T00:00:00+00:00", "versions": {"torch": "2.13.0"}}

DATASET_AS_WRITTEN = {  # manifest.json as `chatbot data build` wrote it before the records
    "format": "chatbot-builder dataset v1", "name": "v1", "created_at": "2026-01-01T00:00:00",
    "sources": [{"path": "logs"}], "options": {"feedback": "not_down"}, "steps": [],
    "counts": {"train": 3, "validation": 1}, "pii": {}, "pii_detector": "patterns only",
    "tokens": {"total": 10}, "chat_model": "embedded:smollm2-135m",
    "chat_model_fingerprint": "f" * 16, "chat_template_hash": "c" * 16, "template": "rag",
    "template_hash": "t" * 16, "render_with_template": True, "sha256": "s" * 64}

EVAL_AS_WRITTEN = {  # metrics.json as `chatbot eval` wrote it before the records
    "name": "heldout", "data": "heldout.jsonl", "items": 1, "variants": ["prompt", "ft"],
    "baseline": "prompt", "settings": {}, "min_effect": 0.05,
    "generation": {"generated": 2, "reused": 0, "seconds": 1.0}, "summaries": {},
    "comparisons": {}, "warnings": [], "gates": [], "per_item": [{"id": "q1"}]}


def _write(path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))


def test_adapter_manifest_written_before_records_loads_and_saves_the_same_keys(tmp_path):
    _write(tmp_path / "zorb" / ADAPTER_MANIFEST, ADAPTER_AS_WRITTEN)
    manifest = AdapterManifest.load(tmp_path / "zorb")
    assert manifest.method == "lora" and manifest.dataset["name"] == "facts"
    (tmp_path / "copy").mkdir()
    manifest.save(tmp_path / "copy")
    assert json.loads((tmp_path / "copy" / ADAPTER_MANIFEST).read_text()) == ADAPTER_AS_WRITTEN


def test_adapter_manifest_without_a_version_is_version_1(tmp_path):
    _write(tmp_path / "ft" / ADAPTER_MANIFEST, {"base_model_fingerprint": "x"})
    assert AdapterManifest.load(tmp_path / "ft").schema_version == 1


@pytest.mark.parametrize("text, error", [
    (json.dumps({**ADAPTER_AS_WRITTEN, "format": 2}), "schema version 2, this version of "
     "chatbot-builder reads 1; retrain the adapter"),
    ("{not json", "is not valid JSON .*; retrain the adapter"),
])
def test_unreadable_adapter_manifest_names_the_file_and_the_fix(tmp_path, text, error):
    (tmp_path / "ft").mkdir()
    (tmp_path / "ft" / ADAPTER_MANIFEST).write_text(text)
    with pytest.raises(ModelError, match=f"{ADAPTER_MANIFEST}.*{error}"):
        AdapterManifest.load(tmp_path / "ft")


def test_dataset_manifest_written_before_records_loads_and_saves_the_same_keys(tmp_path):
    _write(tmp_path / "v1" / "manifest.json", DATASET_AS_WRITTEN)
    manifest = DatasetManifest.load(tmp_path / "v1")
    assert manifest.counts["train"] == 3 and manifest.sha256 == "s" * 64
    manifest.save(tmp_path)
    assert json.loads((tmp_path / "manifest.json").read_text()) == DATASET_AS_WRITTEN


def test_dataset_manifest_of_an_unknown_version_says_rebuild(tmp_path):
    _write(tmp_path / "v9" / "manifest.json",
           {**DATASET_AS_WRITTEN, "format": "chatbot-builder dataset v9"})
    with pytest.raises(DataError, match="manifest.json: schema version 9, .* reads 1; rebuild "
                                        "the dataset with `chatbot data build`"):
        DatasetManifest.load(tmp_path / "v9")


def test_eval_record_written_before_records_loads_and_unknown_version_is_refused(tmp_path):
    _write(tmp_path / "metrics.json", EVAL_AS_WRITTEN)
    record = EvalRecord.load(tmp_path / "metrics.json")
    assert record.baseline == "prompt" and record.schema_version == 1
    _write(tmp_path / "new.json", {**EVAL_AS_WRITTEN, "schema_version": 2})
    with pytest.raises(InputError, match="new.json: schema version 2, .*run `chatbot eval`"):
        EvalRecord.load(tmp_path / "new.json")
