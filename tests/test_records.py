"""The artifact records: files written by earlier versions still load; unknown versions and
broken files fail with an error that names the file and what to do."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chatbot.adapters import ADAPTER_MANIFEST, AdapterManifest
from chatbot.errors import InputError, ModelError
from index.errors import IndexMismatchError
from index.manifest import LEGACY, IndexManifest
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

INDEX_AS_WRITTEN = {  # index/manifest.json as `chatbot index sync` wrote it before the record
    "format": "chatbot-builder index", "format_version": 1, "generation": 1,
    "embedder": "hash:64", "dimension": 64, "chunk_tokens": 40, "chunk_overlap": 8,
    "index_type": "flat", "hnsw_m": 32, "faiss_type": "flat",
    "files": {"bm25": "bm25-000001", "docstore": "docstore-000001.sqlite",
              "faiss": "faiss-000001.index"},
    "documents": {"/docs/a.md": "h" * 64}, "counts": {"chunks": 3, "documents": 1},
    "updated_at": "2026-01-01T00:00:00+00:00"}

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


def test_dataset_manifest_written_before_records_loads_as_sft_and_keeps_its_keys(tmp_path):
    _write(tmp_path / "v1" / "manifest.json", DATASET_AS_WRITTEN)
    manifest = DatasetManifest.load(tmp_path / "v1")
    assert manifest.counts["train"] == 3 and manifest.sha256 == "s" * 64
    assert manifest.kind == "sft"
    manifest.save(tmp_path)
    saved = json.loads((tmp_path / "manifest.json").read_text())
    assert saved == {**DATASET_AS_WRITTEN, "kind": "sft", "files": {}}


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


def test_index_manifest_written_before_the_record_loads_and_saves_the_same_keys(tmp_path):
    _write(tmp_path / "ix" / "manifest.json", INDEX_AS_WRITTEN)
    manifest = IndexManifest.load(tmp_path / "ix")
    assert manifest.settings.embedder == "hash:64" and manifest.files.faiss == "faiss-000001.index"
    assert manifest.counts.chunks == 3 and manifest.documents == {"/docs/a.md": "h" * 64}
    manifest.save(tmp_path)
    # Settings recorded since (contextual chunks, the BM25 analyzer) are saved as built then,
    # and no synced folder, where none was recorded.
    assert json.loads((tmp_path / "manifest.json").read_text()) == {**INDEX_AS_WRITTEN, **LEGACY,
                                                                      "folders": []}


def test_index_manifest_without_a_version_is_version_1(tmp_path):
    _write(tmp_path / "manifest.json",
           {key: value for key, value in INDEX_AS_WRITTEN.items() if key != "format_version"})
    assert IndexManifest.load(tmp_path).format_version == 1


@pytest.mark.parametrize("text, error", [
    (json.dumps({**INDEX_AS_WRITTEN, "format_version": 2}), "schema version 2, this version of "
     "chatbot-builder reads 1"),
    (json.dumps({**INDEX_AS_WRITTEN, "format": "chatbot-builder dataset v1"}),
     "format 'chatbot-builder dataset v1', not 'chatbot-builder index'"),
    (json.dumps({**INDEX_AS_WRITTEN, "files": []}), "IndexFiles is not a JSON object"),
    (json.dumps({key: value for key, value in INDEX_AS_WRITTEN.items() if key != "embedder"}),
     "embedder missing"),
    ("{not json", "is not valid JSON .*"),
])
def test_unreadable_index_manifest_names_the_file_and_the_fix(tmp_path, text, error):
    (tmp_path / "manifest.json").write_text(text)
    with pytest.raises(IndexMismatchError,
                       match=f"manifest.json.*{error}; re-index it: chatbot index sync --rebuild"):
        IndexManifest.load(tmp_path)


def servable_lora_files(adapter_dir: Path) -> None:
    """The files peft reads a LoRA adapter from, readable (their values don't matter here)."""
    import numpy as np
    from safetensors.numpy import save_file

    (adapter_dir / "adapter_config.json").write_text("{}")
    save_file({"w": np.zeros(1, dtype=np.float32)}, adapter_dir / "adapter_model.safetensors")

def test_a_damaged_or_staged_adapter_leaves_the_other_variants_served(tmp_path, caplog):
    from click.testing import CliRunner

    from app.build import build_variants
    from app.cli import main
    from chatbot.config_file import load_config

    adapters = tmp_path / "data" / "adapters"
    for name in ("good", ".half.partial", "broken", "copied_in_part"):
        (adapters / name).mkdir(parents=True)
        (adapters / name / ADAPTER_MANIFEST).write_text(json.dumps(ADAPTER_AS_WRITTEN))
    (adapters / "broken" / ADAPTER_MANIFEST).write_text('{"format": 1, "name": ')  # cut short
    servable_lora_files(adapters / "good")
    config_path = tmp_path / "bot.yaml"
    config_path.write_text("data_dir: data\n")
    with caplog.at_level("WARNING"):
        variants = build_variants(load_config(config_path))
    assert list(variants) == ["prompt", "good"]
    assert "adapter broken is not served:" in caplog.text and "not valid JSON" in caplog.text
    assert "adapter copied_in_part is not served: adapter " in caplog.text
    assert "copied_in_part is incomplete: adapter_config.json is missing" in caplog.text
    listed = CliRunner().invoke(main, ["adapters", "list", "--config", str(config_path)])
    assert listed.exit_code == 0
    assert listed.stdout.splitlines()[0].startswith("broken\tnot served: ")
    assert listed.stdout.splitlines()[1].startswith("copied_in_part\tnot served: ")
    assert listed.stdout.splitlines()[2].startswith("good\tembedded:smollm2-135m\tlora\t")


@pytest.mark.parametrize("damage, problem", [
    (lambda path: path.write_bytes(b'{"format": 1, "name": "caf\xe9"}'),
     "is not UTF-8 text (byte 0xe9 at position 26)"),
    (lambda path: path.mkdir(), "can't be read (Is a directory)"),
], ids=["latin-1", "a folder"])
def test_an_adapter_manifest_no_json_reader_can_take_is_listed_as_not_served(
        tmp_path, damage, problem):
    """A manifest re-saved in Latin-1, or a folder in its place: the server still starts with
    the other variants and `adapters list` names it, where both were a traceback."""
    from click.testing import CliRunner

    from app.build import build_variants
    from app.cli import main
    from chatbot.config_file import load_config

    adapters = tmp_path / "data" / "adapters"
    for name in ("good", "broken"):
        (adapters / name).mkdir(parents=True)
    (adapters / "good" / ADAPTER_MANIFEST).write_text(json.dumps(ADAPTER_AS_WRITTEN))
    servable_lora_files(adapters / "good")
    damage(adapters / "broken" / ADAPTER_MANIFEST)
    config_path = tmp_path / "bot.yaml"
    config_path.write_text("data_dir: data\n")
    assert list(build_variants(load_config(config_path))) == ["prompt", "good"]
    listed = CliRunner().invoke(main, ["adapters", "list", "--config", str(config_path)])
    assert listed.exit_code == 0, listed.output
    assert listed.stdout.splitlines()[0] == (
        f"broken\tnot served: {adapters / 'broken' / ADAPTER_MANIFEST} {problem}; retrain the "
        "adapter with `chatbot train`")
