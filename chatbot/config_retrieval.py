"""The bot config's sections that find the evidence: ``index:`` (how documents become chunks
and vectors) and ``retrieval:`` (how a question finds its passages)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from chatbot.config_section import Section, ShownText


class IndexConfig(Section):
    paths: list[str] = Field(default_factory=lambda: ["docs"])
    """Files and folders ``chatbot index sync`` reads when given no paths (relative to the config)."""
    include: list[str] = Field(
        default_factory=lambda: ["**/*.md", "**/*.markdown", "**/*.txt", "**/*.html",
                                 "**/*.htm", "**/*.pdf", "**/*.docx", "**/*.csv", "**/*.jsonl"])
    exclude: list[str] = Field(
        default_factory=lambda: ["**/.*", "**/node_modules/**", "**/~$*"])
    """Globs of files to skip inside folders; by default hidden files and folders (``.git``,
    ``.venv``, ``.cache``...), ``node_modules``, and the lock files Office keeps beside a
    document while it is open (``~$port.docx``). A path named to ``index sync`` is read."""
    chunk_tokens: int = Field(default=200, ge=16)
    """Chunk size in the embedder's own tokens; keep it under its max sequence length."""
    chunk_overlap: int = Field(default=30, ge=0)
    max_file_mb: float = Field(default=50, gt=0)
    max_upload_mb: float = Field(default=500, gt=0)
    """The most one web UI upload may carry, all its files together: Gradio takes up to 1,000
    files of ``max_file_mb`` each in one upload, 50 GB by default, onto the server's disk."""
    min_free_disk_mb: float = Field(default=1024, ge=0)
    """An upload that would leave less free space than this on the disk of the data dir or of
    the upload cache is refused, so uploads, however many, can't fill the server's disk."""
    text_field: str = "text"
    """Field that holds the text in .csv and .jsonl files (one document per row)."""
    index_type: Literal["auto", "flat", "hnsw"] = "auto"
    """``flat`` is exact search; ``hnsw`` approximate (fast at millions of chunks; deletes are
    filtered until the graph is rebuilt); ``auto`` is flat below 100k chunks, HNSW above."""
    hnsw_m: int = Field(default=32, ge=4)
    """HNSW graph degree: more is better recall, more memory and a slower build."""
    hnsw_ef_search: int = Field(default=128, ge=8)
    """HNSW search breadth: recall vs. speed (see benchmarks/bench_index_latency.py)."""
    batch_size: int = Field(default=16, ge=1)
    """Chunks per embedding batch (sentence-transformers sorts each sync's chunks by length)."""
    contextual: bool = True
    """Embed and BM25-index each chunk with its document title and heading path above it (the
    prompt still shows the chunk alone); changing it needs ``chatbot index sync --rebuild``."""
    sentence_vectors: bool = True
    """Embed each chunk's sentences too, so ``hybrid`` search also ranks a chunk by its best
    sentence (``retrieval.fusion.sentence_weight``); about doubles the embedding work of a
    sync; changing it needs ``chatbot index sync --rebuild``."""

    @model_validator(mode="after")
    def _overlap_below_size(self) -> IndexConfig:
        if self.chunk_overlap >= self.chunk_tokens:
            raise ValueError("chunk_overlap must be smaller than chunk_tokens")
        return self


class RerankConfig(Section):
    model: str | None = None
    """Cross-encoder (a Hugging Face id or a local directory) that re-orders the search's
    candidates by reading query and passage together; ``None`` leaves the order as searched."""
    candidates: int = Field(default=30, ge=1, le=200)
    """Passages searched and re-read per question; the best ``k`` of them are used."""

    @field_validator("model")
    @classmethod
    def _not_empty(cls, value: str | None) -> str | None:
        """An empty path is the config's own folder: the first search would load it."""
        if value is not None and not value.strip():
            raise ValueError("empty; give a cross-encoder (a Hugging Face id or a local "
                             "directory), or null to keep the search order")
        return value


class QueryConfig(Section):
    mode: Literal["off", "last_turns", "rewrite"] = "last_turns"
    """What a follow-up ("and how long does that take?") is searched with: ``last_turns``
    joins the recent user turns, ``rewrite`` asks the chat model for a standalone question,
    ``off`` searches the message alone (see benchmarks/bench_followup.py)."""
    turns: int = Field(default=2, ge=1, le=10)
    """User turns searched together in ``last_turns`` mode, the current one included; the
    turns the rewrite reads in ``rewrite`` mode."""


class FusionConfig(Section):
    method: Literal["rrf", "score"] = "rrf"
    """How ``hybrid`` fuses its rankings (dense, BM25, best sentence): ``rrf`` adds weighted
    reciprocal ranks, ``score`` adds the weighted min-max-normalised scores."""
    dense_weight: float = Field(default=2.0, ge=0, allow_inf_nan=False)
    """Weight of the embedder's ranking; 2:1 leans to it (see ``index/fusion.py``)."""
    bm25_weight: float = Field(default=1.0, ge=0, allow_inf_nan=False)
    sentence_weight: float = Field(default=1.0, ge=0, allow_inf_nan=False)
    """Weight of the ranking by each chunk's best sentence (needs ``index.sentence_vectors``)."""

    @model_validator(mode="after")
    def _some_weight(self) -> FusionConfig:
        if not self.dense_weight + self.bm25_weight + self.sentence_weight:
            raise ValueError("dense_weight, bm25_weight and sentence_weight cannot all be 0")
        return self


class RetrievalConfig(Section):
    mode: Literal["dense", "bm25", "hybrid"] = "hybrid"
    k: int = Field(default=4, ge=1, le=50)
    min_score: float | None = Field(default=None, ge=-1.0, le=1.0)
    """Dense cosine below which a hit is dropped; ``None`` keeps every hit. Past 1 (or NaN)
    every hit would be dropped."""
    no_hits: Literal["answer", "refuse"] = "answer"
    """What to do when no hit passes ``min_score``: answer without context, or refuse."""
    refusal: ShownText = "The documents I have do not cover that question."
    mmr: bool = False
    rerank: RerankConfig = Field(default_factory=RerankConfig)
    fusion: FusionConfig = Field(default_factory=FusionConfig)
    merge_neighbours: bool = True
    """Consecutive chunks of one document found together become one passage (one of the ``k``),
    their shared overlap given once."""
    merge_max_words: int = Field(default=130, ge=1)
    """Words a merged passage may reach (about one full 200-token chunk); a neighbour that would
    pass it takes a place of its own."""
    query: QueryConfig = Field(default_factory=QueryConfig)
