"""A sentence-transformers model with its transformer run by ONNX Runtime, exported once.

Why: on a CPU, transformers' eager BERT spends most of one short query's time in Python between
its operators (all-MiniLM-L6-v2 in float32: ~16 ms for a 4-token query). ONNX Runtime runs the
same float32 graph in C++, about twice as fast per query, with the same vectors (cosine 1 -
1e-7). The modules after the transformer (pooling, normalization, dense layers) still run in
torch, as sentence-transformers configured them, so any model's pooling is kept.

The graph is exported by torch.onnx's TorchScript exporter, whose trace keeps the padding mask
of a batch; a torch.export-based export of the same BERT baked in the unpadded mask (cosine
0.02 on a padded batch). Exports are kept under ``cache`` in a folder per model (named by its
path), each named by a hash of the weights, the config and torch's version, so a model changed
in place, or an upgraded torch or transformers, is exported again and an unchanged one never
twice; a new export removes its model's earlier ones (see :func:`remove_replaced`).
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from index.errors import IndexingError
from index.text import shown

INPUTS = ("input_ids", "attention_mask", "token_type_ids")
"""What a text transformer's graph takes, in this order, where its tokenizer gives it."""


class OnnxExportError(IndexingError):
    """The model's transformer could not be exported to ONNX or loaded by ONNX Runtime."""


class OnnxSentenceEncoder:
    """Encodes texts like ``SentenceTransformer.encode`` (batches of similar length, each
    batch padded), the transformer's forward pass in ONNX Runtime."""

    def __init__(self, model, cache: Path):
        self.model = model
        self.session = load_session(model, cache)
        # The session holds the transformer's weights now; the torch copy (~90 MB for
        # all-MiniLM-L6-v2) would only take memory. The tokenizer and the modules after the
        # transformer, which encode still runs, keep theirs.
        model[0].auto_model.to("meta")
        self.inputs = [given.name for given in self.session.get_inputs()]
        self.prompt = model.prompts.get(model.default_prompt_name or "")
        """The model's default prompt (e.g. ``query: ``), prefixed as ``encode`` does."""

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        longest_first = sorted(range(len(texts)), key=lambda row: -len(texts[row]))
        vectors: list[np.ndarray] = [np.empty(0)] * len(texts)
        for start in range(0, len(texts), batch_size):
            rows = longest_first[start:start + batch_size]
            features = self.model.preprocess([texts[row] for row in rows], prompt=self.prompt)
            feeds = {name: features[name].numpy() for name in self.inputs}
            hidden = self.session.run(None, feeds)[0]
            features["token_embeddings"] = torch.from_numpy(hidden)
            with torch.inference_mode():
                for module in list(self.model)[1:]:
                    features = module(features)
            for row, vector in zip(rows, features["sentence_embedding"].float().numpy()):
                vectors[row] = vector
        return np.stack(vectors)


def load_session(model, cache: Path):
    """ONNX Runtime's session on ``model``'s export. An export that another process's newer
    one removed before it was opened is exported again; one removed while it is read is read
    whole (an open file outlives its name)."""
    import onnxruntime

    for _ in range(2):
        path = exported_graph(model, cache)
        try:
            return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors
            if path.exists():
                raise OnnxExportError(f"ONNX Runtime could not load {shown(path)} ({exc}); "
                                      "delete it to export again, or set "
                                      "models.embedder_runtime: torch") from exc
    raise OnnxExportError(f"the ONNX export {shown(path)} was removed twice before it was read "
                          "(two versions sharing the cache?); set CHATBOT_CACHE_DIR apart for "
                          "one, or models.embedder_runtime: torch")


def exported_graph(model, cache: Path) -> Path:
    """The ONNX file of ``model``'s transformer (float32), exported into ``cache`` if absent."""
    from filelock import FileLock

    if not has_transformer(model):
        raise OnnxExportError(f"the model's first module ({type(model[0]).__name__}) is not a "
                              "transformer that can be exported to ONNX; set "
                              "models.embedder_runtime: torch")
    transformer = model[0].auto_model
    folder = cache / model_folder(transformer)
    path = folder / f"{weights_key(transformer)}.onnx"
    if path.exists():
        return path
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with FileLock(folder / "export.lock"):
            if not path.exists():
                partial = path.with_suffix(".partial")
                export(model, partial)
                os.replace(partial, path)
                remove_replaced(folder, path)
        remove_flat_exports(cache)
    except OSError as exc:
        raise OnnxExportError(f"cannot write the ONNX export into {shown(cache)} ({exc}); set "
                              "CHATBOT_CACHE_DIR to a writable folder, or "
                              "models.embedder_runtime: torch") from exc
    return path


def has_transformer(model) -> bool:
    """Whether the model starts with a transformer to export; a static embedding table (e.g.
    model2vec's) does not, and is fast in torch already."""
    return getattr(model[0], "auto_model", None) is not None


def export(model, path: Path) -> None:
    sample = model.preprocess(["an example sentence", "and a longer example sentence to pad"])
    names = [name for name in INPUTS if name in sample]
    axes = {name: {0: "batch", 1: "tokens"} for name in [*names, "token_embeddings"]}
    try:
        with warnings.catch_warnings(), torch.no_grad():
            # The exporter's deprecation and tracer notes are about its own trace, checked by
            # the tests against torch's vectors; a user can do nothing with them.
            warnings.simplefilter("ignore")
            torch.onnx.export(_LastHiddenState(model[0].auto_model, names).eval(),
                              tuple(sample[name] for name in names), str(path),
                              input_names=names, output_names=["token_embeddings"],
                              dynamic_axes=axes, opset_version=17, dynamo=False)
    except Exception as exc:  # the exporter raises whatever the traced model raises
        path.unlink(missing_ok=True)
        raise OnnxExportError(f"could not export {type(model[0].auto_model).__name__} to "
                              f"ONNX ({exc}); set models.embedder_runtime: torch") from exc


def model_folder(transformer) -> str:
    """The folder of one model's exports: its directory's (or hub id's) last part, readable,
    and a hash of all of it, so two copies of a model keep apart."""
    where = os.path.abspath(transformer.name_or_path) if os.path.isdir(
        transformer.name_or_path) else transformer.name_or_path
    digest = hashlib.sha256(where.encode()).hexdigest()[:12]
    return f"{Path(where).name or 'model'}-{digest}"


def remove_replaced(folder: Path, current: Path) -> None:
    """The model's exports other than ``current`` (other weights, an older torch or
    transformers) and a killed export's part: ~90 MB each that this model never reads again.
    Called under the folder's export lock, so no export there is being written; a process that
    opened an old one still reads it whole (an open file outlives its name)."""
    for stale in folder.iterdir():
        if stale != current and stale.suffix in (".onnx", ".partial"):
            stale.unlink(missing_ok=True)


def remove_flat_exports(cache: Path) -> None:
    """Exports kept flat in ``cache``, as earlier versions kept them, which this one never
    reads, and their parts: each is removed under the lock those versions export under, so
    none that one still running is writing is touched."""
    from filelock import FileLock, Timeout

    for key in {stale.stem for stale in [*cache.glob("*.onnx"), *cache.glob("*.partial")]}:
        try:
            with FileLock(cache / f"{key}.onnx.lock", timeout=0):
                for name in (f"{key}.onnx", f"{key}.partial", f"{key}.onnx.lock"):
                    (cache / name).unlink(missing_ok=True)
        except Timeout:  # an earlier version is exporting it now
            continue


def weights_key(transformer) -> str:
    """A hash of what the graph depends on: the weights, the config (which names the
    transformers version that traced it) and the exporting torch."""
    digest = hashlib.sha256(f"{torch.__version__}\n{transformer.config.to_json_string()}".encode())
    for name, tensor in sorted(transformer.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:24]


class _LastHiddenState(torch.nn.Module):
    """The transformer as a function of positional inputs, as the exporter traces it."""

    def __init__(self, transformer, names: list[str]):
        super().__init__()
        self.transformer = transformer
        self.names = names

    def forward(self, *inputs):
        return self.transformer(**dict(zip(self.names, inputs))).last_hidden_state
