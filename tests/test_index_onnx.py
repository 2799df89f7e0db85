"""The embedder on ONNX Runtime (``models.embedder_runtime``): the vectors torch gives, exported
once per model, and torch again where the export can't be used."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
import torch

from chatbot.config import EMBEDDED_EMBEDDER, BotConfig
from chatbot.config_file import config_problems
from chatbot.models import resolve_model
from index.embed import SentenceTransformerEmbedder
from index.manifest import IndexSettings
from index.onnx_encoder import OnnxExportError, exported_graph
from index.search import Retriever
from index.store import Store
from index.sync import sync

pytestmark = pytest.mark.integration

TEXTS = ["When is my tax return due?", "hi", "",
         "You can renew an adult passport online. It costs 88 pounds. " * 3,
         "My father died and I am the executor of his will. " * 60]  # past the 256-token window


def embedder(path, runtime: str, cache: Path | None = None) -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder(str(path), name=EMBEDDED_EMBEDDER, dtype="float32",
                                       runtime=runtime, onnx_cache=cache, batch_size=4)


def cosines(a, b):
    return (a * b).sum(axis=1)  # both are unit vectors


def test_onnx_gives_torchs_vectors_for_a_padded_batch_and_for_each_text_alone(tmp_path):
    model = resolve_model(EMBEDDED_EMBEDDER)
    reference = embedder(model, "torch").encode(TEXTS)
    onnx = embedder(model, "onnx", tmp_path)
    assert onnx.runtime_in_use == "onnx"
    assert cosines(onnx.encode(TEXTS), reference).min() > 0.99999  # one batch, padded
    alone = [onnx.encode([text])[0] for text in TEXTS]
    assert cosines(reference, alone).min() > 0.99999
    # ONNX Runtime holds the transformer's weights; a torch copy beside it (~90 MB) is dropped
    transformer = onnx.model[0].auto_model
    assert all(tensor.is_meta for tensor in [*transformer.parameters(), *transformer.buffers()])
    assert onnx.runtime_in_use == "onnx" and onnx.count_tokens("a b") == 2
    assert embedder(model, "auto", tmp_path).runtime_in_use == "onnx"  # float32 on the CPU
    assert embedder(model, "auto").runtime_in_use == "torch"  # nowhere to keep the export


def test_a_models_default_prompt_is_prefixed_on_onnx_as_on_torch(tmp_path):
    from sentence_transformers import SentenceTransformer

    SentenceTransformer(resolve_model(EMBEDDED_EMBEDDER), prompts={"query": "query: "},
                        default_prompt_name="query").save(str(tmp_path / "prompted"))
    prompted = embedder(tmp_path / "prompted", "torch").encode(TEXTS)
    assert cosines(prompted, embedder(resolve_model(EMBEDDED_EMBEDDER), "torch").encode(
        TEXTS)).min() < 0.99  # the prompt changes the vectors
    onnx = embedder(tmp_path / "prompted", "onnx", tmp_path / "onnx").encode(TEXTS)
    assert cosines(onnx, prompted).min() > 0.99999


def test_an_index_built_with_torch_is_searched_with_onnx(tmp_path):
    model = resolve_model(EMBEDDED_EMBEDDER)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "tax.md").write_text("# Self Assessment\n\nFile your tax return "
                                              "online by 31 January.")
    (tmp_path / "docs" / "passport.md").write_text("# Passports\n\nRenew a passport online.")
    built_with = embedder(model, "torch")
    store = Store.open(tmp_path / "ix", IndexSettings(EMBEDDED_EMBEDDER, None, 200, 30),
                       create=True)
    assert sync([tmp_path / "docs"], store, built_with).ok
    hit = Retriever(Store.open(tmp_path / "ix"), embedder(model, "onnx", tmp_path / "onnx"),
                    mode="dense", k=1).search("When is my tax return due?")[0]
    assert hit.source.endswith("tax.md")


def test_a_model_is_exported_once_and_again_when_its_weights_change(tmp_path):
    """A model changed in place (or an upgraded torch or transformers) is exported again, and
    its earlier exports (~90 MB each), a killed export's part and the flat exports of earlier
    versions are removed instead of piling up; another model's export stays, and a process
    that had opened the old export still reads it whole."""
    model = tmp_path / "model"
    shutil.copytree(resolve_model(EMBEDDED_EMBEDDER), model)
    cache = tmp_path / "onnx"
    embedder(model, "onnx", cache).encode(TEXTS[:1])
    [export] = cache.rglob("*.onnx")
    written = export.stat().st_mtime_ns
    embedder(model, "onnx", cache).encode(TEXTS[:1])
    assert [*cache.rglob("*.onnx")] == [export] and export.stat().st_mtime_ns == written

    killed = export.with_name("0" * 24 + ".partial")
    flat = [cache / ("1" * 24 + ".onnx"), cache / ("2" * 24 + ".partial")]
    other_model = cache / "other-model-0123456789ab" / ("3" * 24 + ".onnx")
    other_model.parent.mkdir()
    for leftover in (killed, *flat, other_model):
        leftover.write_bytes(b"graph")
    size, held = export.stat().st_size, export.open("rb")  # another process, reading it
    changed = embedder(model, "torch")
    with torch.no_grad():  # the model fine-tuned in place: other weights, same directory
        changed.model[0].auto_model.embeddings.word_embeddings.weight.mul_(1.5)
    changed.model.save(str(model))
    before = embedder(model, "torch").encode(TEXTS)
    assert cosines(embedder(model, "onnx", cache).encode(TEXTS), before).min() > 0.99999
    [new] = [path for path in export.parent.iterdir() if path.suffix != ".lock"]
    assert new != export and new.suffix == ".onnx"
    assert sorted(cache.rglob("*.onnx")) == sorted([new, other_model])
    assert not [*cache.rglob("*.partial")] and len(held.read()) == size
    held.close()


def test_an_export_onnx_runtime_cannot_load_is_an_error_or_torch_under_auto(tmp_path, caplog):
    model = resolve_model(EMBEDDED_EMBEDDER)
    cache = tmp_path / "onnx"
    broken = exported_graph(embedder(model, "torch").model, cache)
    broken.write_bytes(b"not a graph")  # e.g. a disk that filled while it was copied over

    with pytest.raises(OnnxExportError, match="delete it to export again, or set "
                                              "models.embedder_runtime: torch"):
        embedder(model, "onnx", cache).encode(TEXTS[:1])

    fallback = embedder(model, "auto", cache)
    with caplog.at_level(logging.WARNING):
        vectors = fallback.encode(TEXTS)
    assert fallback.runtime_in_use == "torch" and "embedding with torch instead" in caplog.text
    assert cosines(vectors, embedder(model, "torch").encode(TEXTS)).min() > 0.99999


def test_a_model_without_a_transformer_embeds_with_torch_under_auto_and_is_refused_as_onnx(
        tmp_path, caplog):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import StaticEmbedding
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(Path(resolve_model(EMBEDDED_EMBEDDER)) / "tokenizer.json"))
    SentenceTransformer(modules=[StaticEmbedding(tokenizer, embedding_dim=32)]).save(
        str(tmp_path / "static"))  # a model2vec-style table of token vectors
    static = embedder(tmp_path / "static", "auto", tmp_path / "onnx")
    with caplog.at_level(logging.WARNING):
        assert static.encode(TEXTS).shape == (len(TEXTS), 32)
    assert static.runtime_in_use == "torch" and not caplog.text
    with pytest.raises(OnnxExportError, match=r"first module \(StaticEmbedding\) is not a "
                                              "transformer.*embedder_runtime: torch"):
        embedder(tmp_path / "static", "onnx", tmp_path / "onnx").encode(TEXTS)


def test_the_runtime_is_configured_and_onnx_only_in_float32_on_the_cpu():
    from app.build import embedder_spec
    from chatbot.indexing import open_embedder

    assert open_embedder(embedder_spec(BotConfig())).runtime == "auto"
    config = BotConfig(models={"embedder_runtime": "torch"})
    assert open_embedder(embedder_spec(config)).runtime == "torch"
    message = ("models: embedder_runtime onnx computes in float32 on the CPU; set "
               "embedder_dtype to float32 or auto and device to cpu or auto, or "
               "embedder_runtime to torch")
    assert config_problems({"models": {"embedder_runtime": "onnx",
                                       "embedder_dtype": "bfloat16"}}) == [message]
    assert config_problems({"models": {"embedder_runtime": "onnx", "device": "cuda"}}) == [message]
