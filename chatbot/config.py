"""The bot config: one YAML file per bot, validated at the edge.

Every section is a pydantic model with ``extra="forbid"`` so an unknown or misspelt key is an
error, and :func:`load_config` reports every problem at once, each with its key path.
Classes elsewhere take flat arguments, never this object.

    chatbot config check configs/default.yaml
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from chatbot.errors import ConfigError

EMBEDDED_CHAT_MODEL = "embedded:smollm2-135m-instruct"
EMBEDDED_EMBEDDER = "embedded:all-minilm-l6-v2"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class ModelsConfig(Section):
    chat: str = EMBEDDED_CHAT_MODEL
    """Chat model: ``embedded:smollm2-135m-instruct``, a Hugging Face id or a local directory."""
    embedder: str = EMBEDDED_EMBEDDER
    """Embedder: ``embedded:all-minilm-l6-v2``, a Hugging Face id or a local directory."""
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """``auto`` is float32 on CPUs (bf16 is many times slower without bf16 instructions)."""
    threads: int | None = Field(default=None, ge=1)
    """torch intra-op threads for generation; ``None`` keeps torch's default."""


class IndexConfig(Section):
    paths: list[str] = Field(default_factory=lambda: ["docs"])
    """Files and folders ``chatbot index sync`` reads when given no paths (relative to the config)."""
    include: list[str] = Field(
        default_factory=lambda: ["**/*.md", "**/*.txt", "**/*.html", "**/*.htm", "**/*.pdf",
                                 "**/*.docx", "**/*.csv", "**/*.jsonl"])
    exclude: list[str] = Field(default_factory=lambda: ["**/.git/**", "**/node_modules/**"])
    chunk_tokens: int = Field(default=200, ge=16)
    """Chunk size in the embedder's own tokens; keep it under its max sequence length."""
    chunk_overlap: int = Field(default=30, ge=0)
    max_file_mb: float = Field(default=50, gt=0)
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

    @model_validator(mode="after")
    def _overlap_below_size(self) -> IndexConfig:
        if self.chunk_overlap >= self.chunk_tokens:
            raise ValueError("chunk_overlap must be smaller than chunk_tokens")
        return self


class RetrievalConfig(Section):
    mode: Literal["dense", "bm25", "hybrid"] = "hybrid"
    k: int = Field(default=4, ge=1, le=50)
    min_score: float | None = None
    """Dense cosine below which a hit is dropped; ``None`` keeps every hit."""
    no_hits: Literal["answer", "refuse"] = "answer"
    """What to do when no hit passes ``min_score``: answer without context, or refuse."""
    refusal: str = "The documents I have do not cover that question."
    mmr: bool = False


class GenerationConfig(Section):
    max_new_tokens: int = Field(default=256, ge=1)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    """0 is greedy decoding: reproducible answers."""
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    repetition_penalty: float = Field(default=1.1, gt=0.0)
    max_message_chars: int = Field(default=8000, ge=1)
    """A longer user message is rejected with a clear error."""


class VariantConfig(Section):
    model: str | None = None
    """Chat model of this variant; ``None`` uses ``models.chat``."""
    adapter: str | None = None
    """LoRA adapter directory (relative paths are under the data directory)."""
    template: str = "rag"
    """Prompt template name (``chatbot/templates/NAME.j2``) or a path to a .j2 file."""
    retrieval: bool = True
    k: int | None = Field(default=None, ge=1, le=50)


class FiltersConfig(Section):
    blocklist: list[str] = Field(default_factory=list)
    """Words or phrases (case-insensitive) that replace the whole answer with ``replacement``."""
    replacement: str = "I can't help with that."
    redact_pii: bool = True


class LoggingConfig(Section):
    enabled: bool = True


class ServerConfig(Section):
    host: str = "127.0.0.1"
    port: int = Field(default=7860, ge=1, le=65535)
    auth_file: str | None = None
    """File of ``user:password`` lines; ``CHATBOT_USER``/``CHATBOT_PASSWORD`` work too."""
    api_key_env: str = "CHATBOT_API_KEY"
    """The API requires ``Authorization: Bearer <key>`` when this variable is set."""


class BotConfig(Section):
    name: str = "chatbot-builder"
    data_dir: str = ".chatbot"
    """All of a bot's state: index, logs, datasets, adapters, evals. ``$CHATBOT_DATA_DIR`` wins."""
    models: ModelsConfig = Field(default_factory=ModelsConfig)
    index: IndexConfig = Field(default_factory=IndexConfig)
    retrieval: RetrievalConfig = Field(default_factory=RetrievalConfig)
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    variants: dict[str, VariantConfig] = Field(
        default_factory=lambda: {"prompt": VariantConfig()})
    default_variant: str = "prompt"
    filters: FiltersConfig = Field(default_factory=FiltersConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    server: ServerConfig = Field(default_factory=ServerConfig)

    # Set by load_config, not by the YAML: where relative paths are resolved from.
    base_dir: Path = Field(default=Path("."), exclude=True)

    @field_validator("variants")
    @classmethod
    def _at_least_one_variant(cls, value: dict[str, VariantConfig]) -> dict[str, VariantConfig]:
        if not value:
            raise ValueError("at least one variant is needed")
        return value

    @model_validator(mode="after")
    def _default_variant_exists(self) -> BotConfig:
        if self.default_variant not in self.variants:
            raise ValueError(f"default_variant {self.default_variant!r} is not one of "
                             f"the variants: {', '.join(self.variants)}")
        return self

    @property
    def data_path(self) -> Path:
        override = os.environ.get("CHATBOT_DATA_DIR")
        return self.resolve(override) if override else self.resolve(self.data_dir)

    def resolve(self, path: str | Path) -> Path:
        """A path from the config, relative to the config file's folder."""
        path = Path(path).expanduser()
        return path if path.is_absolute() else (self.base_dir / path).resolve()


def default_config_path() -> Path:
    return Path(os.environ.get("CHATBOT_CONFIG", "configs/default.yaml"))


def config_problems(raw: object) -> list[str]:
    """Every problem in a parsed YAML document, each as ``key.path: what is expected``."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        return ["(top level): expected a mapping of sections, got " + type(raw).__name__]
    try:
        BotConfig.model_validate(raw)
    except ValidationError as exc:
        return [_describe(error) for error in exc.errors()]
    return []


def _describe(error: dict) -> str:
    path = ".".join(str(part) for part in error["loc"]) or "(top level)"
    if error["type"] == "extra_forbidden":
        return f"{path}: unknown key (remove it or check its spelling)"
    message = error["msg"].removeprefix("Value error, ")
    return f"{path}: {message}"


def load_config(path: str | Path | None = None) -> BotConfig:
    """Read and validate a bot YAML; raises :class:`ConfigError` listing every problem."""
    path = Path(path) if path else default_config_path()
    if not path.is_file():
        raise ConfigError(f"config file {path} not found; pass --config PATH or set $CHATBOT_CONFIG")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    problems = config_problems(raw)
    if problems:
        raise ConfigError(f"{path}: {len(problems)} problem(s):\n  " + "\n  ".join(problems))
    config = BotConfig.model_validate(raw or {})
    config.base_dir = path.resolve().parent
    return config
