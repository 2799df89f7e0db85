"""Embedders: text to normalized float32 vectors, and the tokenizer that sizes chunks.

``Embedder`` is a Protocol; :class:`SentenceTransformerEmbedder` is the real one (loaded on first
use, so building one costs nothing) and :class:`HashEmbedder` a deterministic stand-in for tests.

    chatbot index sync docs/     # embeds with the configured models.embedder
"""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

logger = logging.getLogger(__name__)


@runtime_checkable
class Embedder(Protocol):
    name: str
    """Recorded in the index manifest; an index is only searched with the embedder that built it."""

    @property
    def dimension(self) -> int: ...

    @property
    def max_tokens(self) -> int:
        """Tokens of text (special tokens excluded) that the model reads without truncating."""
        ...

    def count_tokens(self, text: str) -> int: ...

    def encode(self, texts: list[str]) -> np.ndarray:
        """One L2-normalized float32 row per text."""
        ...


class SentenceTransformerEmbedder:
    """A sentence-transformers model, loaded on first use, encoding in batches."""

    def __init__(self, path: str, name: str | None = None, device: str | None = None,
                 batch_size: int = 16, dtype: str = "auto", runtime: str = "torch",
                 onnx_cache: Path | None = None):
        self.path = path
        self.name = name or path
        self.device = None if device in (None, "auto") else device
        self.batch_size = batch_size
        self.dtype = dtype
        """``float32``, ``bfloat16`` or ``auto`` (bfloat16 on a CPU with bf16 instructions, else
        float32) for weights and activations; vectors come out as float32."""
        self.runtime = runtime
        """``torch``, ``onnx`` (ONNX Runtime on the CPU, float32; see ``index.onnx_encoder``)
        or ``auto``: ONNX Runtime where the model computes in float32 on the CPU."""
        self.onnx_cache = onnx_cache
        """Where ONNX exports are kept; needed by the ``onnx`` and ``auto`` runtimes."""
        self._model = None
        self._onnx = None

    @property
    def model(self):
        if self._model is None:
            from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer(self.path, device=self.device,
                                              local_files_only=Path(self.path).is_dir())
            if self.precision == "bfloat16":
                import torch

                self._model.to(torch.bfloat16)
        return self._model

    @property
    def precision(self) -> str:
        """``float32`` or ``bfloat16``: what ``dtype`` resolves to on the model's device."""
        if self.dtype != "auto":
            return self.dtype
        on_cpu = self.model.device.type == "cpu"
        return "bfloat16" if on_cpu and cpu_has_bfloat16() else "float32"

    @property
    def runtime_in_use(self) -> str:
        """``torch`` or ``onnx``: what ``runtime`` resolves to for this model and CPU."""
        if self._onnx is not None:  # running; the model's torch weights are dropped (on meta)
            return "onnx"
        if self.runtime != "auto":
            return self.runtime
        from index.onnx_encoder import has_transformer

        on_cpu = self.model.device.type == "cpu"
        usable = on_cpu and self.precision == "float32" and self.onnx_cache is not None
        return "onnx" if usable and has_transformer(self.model) else "torch"

    @property
    def dimension(self) -> int:
        return int(self.model.get_embedding_dimension())

    @property
    def max_tokens(self) -> int:
        # [CLS] and [SEP] (or their equivalents) take room in the model's window too.
        specials = len(self.model.tokenizer("", add_special_tokens=True)["input_ids"])
        return int(self.model.max_seq_length) - specials

    def count_tokens(self, text: str) -> int:
        # verbose=False: counting a long text is the point, not a truncation to warn about.
        return len(self.model.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        onnx = self._onnx_encoder()
        if onnx is not None:
            vectors = onnx.encode(texts, self.batch_size)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True).clip(min=1e-12)
        else:
            vectors = self.model.encode(texts, batch_size=self.batch_size,
                                        normalize_embeddings=True, convert_to_numpy=True,
                                        show_progress_bar=False)
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def _onnx_encoder(self):
        """ONNX Runtime's encoder where the runtime resolves to it, made at the first text;
        ``None`` where texts are embedded with torch."""
        if self._onnx is None and self.runtime_in_use == "onnx":
            from index.onnx_encoder import OnnxExportError, OnnxSentenceEncoder

            if self.onnx_cache is None:
                raise ValueError("the onnx runtime needs onnx_cache, where its export is kept")
            try:
                self._onnx = OnnxSentenceEncoder(self.model, self.onnx_cache)
            except OnnxExportError as exc:
                if self.runtime != "auto":
                    raise
                logger.warning("%s; embedding with torch instead", exc)
                self.runtime = "torch"
        return self._onnx


def cpu_has_bfloat16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX): there it embeds ~2x
    faster than float32; elsewhere bfloat16 is emulated and many times slower."""
    import torch

    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


_WORD = re.compile(r"\w+|[^\w\s]")


class HashEmbedder:
    """Words hashed into signed buckets: deterministic, instant, similar texts score close.

    A stand-in for tests and smoke runs (``models.embedder: hash:64``); it knows no meaning.
    """

    def __init__(self, dimension: int = 64, max_tokens: int = 128):
        self.name = f"hash:{dimension}"
        self._dimension = dimension
        self._max_tokens = max_tokens

    @property
    def dimension(self) -> int:
        return self._dimension

    @property
    def max_tokens(self) -> int:
        return self._max_tokens

    def count_tokens(self, text: str) -> int:
        return len(_WORD.findall(text))

    def encode(self, texts: list[str]) -> np.ndarray:
        vectors = np.zeros((len(texts), self._dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in _WORD.findall(text.lower()):
                digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
                bucket = int.from_bytes(digest[:4], "little") % self._dimension
                vectors[row, bucket] += 1.0 if digest[4] & 1 else -1.0
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        return vectors / norms
