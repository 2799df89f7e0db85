"""A sentence-transformers model with its transformer run by ONNX Runtime, exported once.

Why: on a CPU, transformers' eager BERT spends most of one short query's time in Python between
its operators (all-MiniLM-L6-v2 in float32: ~16 ms for a 4-token query). ONNX Runtime runs the
same float32 graph in C++, about twice as fast per query, with the same vectors (cosine 1 -
1e-7). The modules after the transformer (pooling, normalization, dense layers) still run in
torch, as sentence-transformers configured them, so any model's pooling is kept.

The graph is exported by torch.onnx's TorchScript exporter, whose trace keeps the padding mask
of a batch; a torch.export-based export of the same BERT baked in the unpadded mask (cosine
0.02 on a padded batch). Exports are kept under ``cache``, named by a hash of the weights and
the config, so a model changed in place is exported again and an unchanged one never twice.
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
        import onnxruntime

        self.model = model
        path = exported_graph(model, cache)
        try:
            self.session = onnxruntime.InferenceSession(str(path),
                                                        providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise OnnxExportError(f"ONNX Runtime could not load {shown(path)} ({exc}); delete it "
                                  "to export again, or set models.embedder_runtime: torch"
                                  ) from exc
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


def exported_graph(model, cache: Path) -> Path:
    """The ONNX file of ``model``'s transformer (float32), exported into ``cache`` if absent."""
    from filelock import FileLock

    if not has_transformer(model):
        raise OnnxExportError(f"the model's first module ({type(model[0]).__name__}) is not a "
                              "transformer that can be exported to ONNX; set "
                              "models.embedder_runtime: torch")
    path = cache / f"{weights_key(model[0].auto_model)}.onnx"
    if path.exists():
        return path
    try:
        cache.mkdir(parents=True, exist_ok=True)
        with FileLock(f"{path}.lock"):
            if not path.exists():
                partial = path.with_suffix(".partial")
                export(model, partial)
                os.replace(partial, path)
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
