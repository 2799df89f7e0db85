"""The bot config's schema: one YAML file per bot, validated at the edge.

Every section is a pydantic model with ``extra="forbid"`` so an unknown or misspelt key is an
error; ``chatbot.config_file`` reads the YAML and reports every problem at once, each with its
key path. This module holds the sections that serve answers and ``BotConfig``; the ``index:``
and ``retrieval:`` sections are in ``chatbot.config_retrieval``, those of the learning loop
(data, training, A/B) in ``chatbot.config_training``. Only ``app/`` reads
the config; everything below it takes flat records.

    chatbot config check configs/default.yaml
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationInfo, field_validator, model_validator

from chatbot.attribution import WITHHELD_MESSAGE
from chatbot.config_retrieval import IndexConfig, RetrievalConfig
from chatbot.config_section import Section, ShownText
from chatbot.config_training import AbConfig, DataConfig, TrainingConfig

EMBEDDED_CHAT_MODEL = "embedded:smollm2-135m-instruct"
EMBEDDED_EMBEDDER = "embedded:all-minilm-l6-v2"


class ModelsConfig(Section):
    chat: str = EMBEDDED_CHAT_MODEL
    """Chat model: ``embedded:smollm2-135m-instruct``, a Hugging Face id or a local directory."""
    embedder: str = EMBEDDED_EMBEDDER
    """Embedder: ``embedded:all-minilm-l6-v2``, a Hugging Face id or a local directory."""
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """``auto`` is float32 on CPUs (bf16 is many times slower without bf16 instructions)."""
    embedder_dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    """Precision the embedder computes in. ``bfloat16`` embeds ~2x faster on CPUs with bf16
    instructions (and GPUs) with vectors within 0.998 cosine of float32, and is many times
    slower on CPUs without them; ``auto`` picks it on a CPU that has them, float32 elsewhere."""
    embedder_runtime: Literal["auto", "torch", "onnx"] = "auto"
    """``onnx``: ONNX Runtime (float32, CPU; ~2x faster per query than torch); ``auto``: onnx
    where the embedder computes in float32 on the CPU, else ``torch``."""
    threads: int | None = Field(default=None, ge=1)
    """torch intra-op threads for generation; ``None`` keeps torch's default."""
    max_batch: int = Field(default=8, ge=1)
    """Answers the in-process model decodes together (continuous batching); 1 answers one at
    a time."""
    queue_timeout_s: float = Field(default=120.0, gt=0)
    """Seconds an answer waits for the model (``max_batch: 1``) or for a place in its full
    batch before it fails as busy (a 503 to API callers)."""

    @model_validator(mode="after")
    def _onnx_in_float32(self) -> "ModelsConfig":
        if self.embedder_runtime == "onnx" and (self.embedder_dtype == "bfloat16"
                                                or self.device in ("cuda", "mps")):
            raise ValueError("embedder_runtime onnx computes in float32 on the CPU; set "
                             "embedder_dtype to float32 or auto and device to cpu or auto, or "
                             "embedder_runtime to torch")
        return self

    @field_validator("chat", "embedder")
    @classmethod
    def _names_a_model(cls, value: str, info: ValidationInfo) -> str:
        embedded = EMBEDDED_CHAT_MODEL if info.field_name == "chat" else EMBEDDED_EMBEDDER
        if not value.strip():  # else the config's own folder is loaded as the model
            raise ValueError("empty; give a Hugging Face id, a local directory or the embedded "
                             f"model {embedded!r}")
        if value.startswith("embedded:") and value != embedded:
            raise ValueError(f"{value!r} is not an embedded model; the embedded {info.field_name} "
                             f"model is {embedded!r} (or give a Hugging Face id or a local "
                             "directory)")
        return value


class GenerationConfig(Section):
    max_new_tokens: int = Field(default=256, ge=1)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    """0 is greedy decoding: reproducible answers."""
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    repetition_penalty: float = Field(default=1.1, gt=0.0)
    max_message_chars: int = Field(default=8000, ge=1)
    """A longer user message is rejected with a clear error."""
    max_prompt_tokens: int | None = Field(default=3072, ge=1)
    """Most tokens one prompt may hold (sources, history, question): the oldest history goes
    first. Reading the prompt is the slow part of an answer on a CPU, so one long conversation
    would hold the model for minutes. ``None``: the model's window less ``max_new_tokens`` (raise
it for a model served on a GPU with a long window)."""


class BackendConfig(Section):
    """An OpenAI-compatible server that generates for the variants naming it."""

    kind: Literal["openai"] = "openai"
    base_url: str
    """The server's ``/v1`` URL, such as ``http://localhost:8000/v1``."""
    api_key_env: str | None = None
    """Environment variable that holds the API key; ``None`` sends none."""
    timeout_s: float = Field(default=120.0, gt=0)
    """Seconds to wait for the server to connect, answer, or send the next piece."""
    max_concurrency: int = Field(default=16, ge=1)
    """Most requests this bot sends the server at once; more wait their turn."""
    queue_timeout_s: float = Field(default=120.0, gt=0)
    """Seconds a request waits for its turn before it fails as busy (a 503 to API callers)."""

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{value!r} is not an http:// or https:// URL; expected one such "
                             "as http://localhost:8000/v1")
        return value.rstrip("/")


def _unknown_backend(name: str, declared) -> str:
    return (f"backend {name!r} is not declared under backends (declared: "
            f"{', '.join(declared) or 'none'})")


class VariantConfig(Section):
    model: str | None = None
    """Chat model of this variant; ``None`` uses ``models.chat``. With ``backend``, the model
    name the server serves."""
    adapter: str | None = None
    """LoRA adapter directory (relative paths are under the data directory)."""
    template: str = "rag"
    """Prompt template name (``chatbot/templates/NAME.j2``) or a path to a .j2 file."""
    retrieval: bool = True
    k: int | None = Field(default=None, ge=1, le=50)
    backend: str | None = None
    """A name under ``backends`` that generates this variant; ``None`` runs ``model`` here."""
    tokenizer: str | None = None
    """With ``backend``: the served model's tokenizer (HF id or directory) for the context
    budget; ``None`` tries ``model`` locally, else estimates (``chatbot.remote``)."""
    context_window: int | None = Field(default=None, ge=16)
    """With ``backend``: tokens the served model reads, prompt and answer; ``None`` is 4096."""

    @field_validator("backend")
    @classmethod
    def _backend_declared(cls, value: str | None, info: ValidationInfo) -> str | None:
        """Checked here when the caller passes the declared names (``config_problems``), so
        an unknown name is reported at its key path along with every other problem."""
        declared = (info.context or {}).get("backends")
        if value is not None and declared is not None and value not in declared:
            raise ValueError(_unknown_backend(value, declared))
        return value

    @model_validator(mode="after")
    def _backend_settings(self) -> VariantConfig:
        if self.backend is None:
            local_only = [key for key in ("tokenizer", "context_window")
                          if getattr(self, key) is not None]
            if local_only:
                raise ValueError(f"{' and '.join(local_only)}: only for a variant with a "
                                 "backend; remove it or set backend")
            return self
        if self.adapter is not None:
            raise ValueError(f"backend {self.backend!r} and adapter are both set; a remote "
                             "backend can't load a local adapter: remove one of them")
        if not self.model:
            raise ValueError(f"backend {self.backend!r} needs model: the name the server "
                             "serves (as its /v1/models lists it)")
        return self


class FiltersConfig(Section):
    blocklist: list[str] = Field(default_factory=list)
    """Words or phrases (case-insensitive) that replace the whole answer with ``replacement``."""
    replacement: ShownText = "I can't help with that."
    redact_pii: bool = True


class LoggingConfig(Section):
    enabled: bool = True


class AttributionConfig(Section):
    """Per-sentence attribution (``chatbot.attribution``), computed after each answer."""

    enabled: bool = True
    """Match each answer sentence to the passage sentences that back it and mark the rest."""
    policy: Literal["show", "flag", "withhold"] = "show"
    """An answer supported below ``min_support``: ``show`` it (unsupported sentences marked),
    ``flag`` it with a notice, or ``withhold`` it (shown only once checked; logged as
    generated)."""
    min_support: float = Field(default=0.5, ge=0.0, le=1.0)
    """Share of the answer's claims (by characters) that must be supported."""
    sentence_threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    """Score from which a passage sentence backs an answer sentence; ``None`` is the value
    measured with the embedded embedder (benchmarks/bench_attribution.py)."""
    withheld_message: ShownText = WITHHELD_MESSAGE
    """Shown instead of a withheld answer."""


class ServerConfig(Section):
    host: str = "127.0.0.1"
    port: int = Field(default=7860, ge=1, le=65535)
    auth_file: str | None = None
    """File of ``user:password`` lines; ``CHATBOT_USER``/``CHATBOT_PASSWORD`` work too."""
    api_key_env: str = "CHATBOT_API_KEY"
    """When this variable is set, every route requires ``Authorization: Bearer <key>`` or a
    login (``app.auth``)."""
    max_request_messages: int = Field(default=500, ge=1)
    """Most messages one API request may send (history included); more is a 400."""
    max_request_chars: int = Field(default=200_000, ge=1)
    """Most characters all messages of one API request may hold together; more is a 400."""
    max_waiting_answers: int = Field(default=64, ge=1)
    """Most API answers running or waiting for the model at once; one more is a 429 with
    ``Retry-After``, so no client can queue unbounded work."""
    allowed_hosts: list[str] = Field(default_factory=list)
    """Names, besides ``localhost``, ``127.0.0.1`` and ``[::1]``, that a server with no login
    on a loopback address answers requests sent to: a proxy's name, for a proxy in front that
    passes its ``Host`` on (``app.cross_site.LocalNamesOnly``)."""


class BotConfig(Section):
    name: str = "chatbot-builder"
    data_dir: str = ".chatbot"
    """All of a bot's state: index, logs, datasets, adapters, evals. ``$CHATBOT_DATA_DIR`` wins."""
    models: ModelsConfig = Field(default_factory=ModelsConfig)
    index: IndexConfig = Field(default_factory=IndexConfig)
    retrieval: RetrievalConfig = Field(default_factory=RetrievalConfig)
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    backends: dict[str, BackendConfig] = Field(default_factory=dict)
    """Named OpenAI-compatible servers that variants can generate with."""
    variants: dict[str, VariantConfig] = Field(
        default_factory=lambda: {"prompt": VariantConfig()})
    default_variant: str = "prompt"
    filters: FiltersConfig = Field(default_factory=FiltersConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    attribution: AttributionConfig = Field(default_factory=AttributionConfig)
    server: ServerConfig = Field(default_factory=ServerConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    ab: AbConfig = Field(default_factory=AbConfig)

    # Set by load_config, not by the YAML: where relative paths are resolved from.
    base_dir: Path = Field(default=Path("."), exclude=True)

    @property
    def ab_split(self) -> dict[str, float]:
        """Each A/B arm's share of sessions: ``ab.weights``, else the variants declared here in
        equal shares. An adapter registered since (``chatbot train``) joins only once named in
        ``ab.weights``, so no new adapter reaches users before someone chose it."""
        return dict(self.ab.weights) or {name: 1.0 for name in self.variants}

    @field_validator("variants")
    @classmethod
    def _at_least_one_variant(cls, value: dict[str, VariantConfig]) -> dict[str, VariantConfig]:
        if not value:
            raise ValueError("at least one variant is needed")
        return value

    @model_validator(mode="after")
    def _checks_across_keys(self) -> BotConfig:
        """Every check that compares keys runs, so one problem does not hide the next; the
        problems come as one message, a line each (``chatbot.config_file`` splits them)."""
        problems = problems_across_keys(self)
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @property
    def data_path(self) -> Path:
        override = os.environ.get("CHATBOT_DATA_DIR")  # a relative one: from where it was set
        return Path(override).expanduser().resolve() if override else self.resolve(self.data_dir)

    def resolve(self, path: str | Path) -> Path:
        """A path from the config, relative to the config file's folder."""
        path = Path(path).expanduser()
        return path if path.is_absolute() else (self.base_dir / path).resolve()

    def template_ref(self, name: str) -> str:
        """A template name as ``load_template`` takes it: ``.j2`` files relative to the config."""
        return str(self.resolve(name)) if name.endswith(".j2") else name


def problems_across_keys(config: BotConfig) -> list[str]:
    """What the checks that compare keys find, each as ``key.path: message``."""
    return [problem for check in (_backends_declared, _room_for_a_prompt, _a_ranking_to_fuse,
                                  _default_variant_exists, _ab_names_are_variants)
            for problem in check(config)]


def _backends_declared(config: BotConfig) -> list[str]:
    problems = []
    served: dict[tuple[str, str], tuple[str, VariantConfig]] = {}
    for name, spec in config.variants.items():
        if spec.backend is None:
            continue
        if spec.backend not in config.backends:
            problems.append(f"variants.{name}.backend: "
                            + _unknown_backend(spec.backend, config.backends))
            continue
        first = served.setdefault((spec.backend, spec.model), (name, spec))
        if (first[1].tokenizer, first[1].context_window) != (spec.tokenizer,
                                                             spec.context_window):
            problems.append(f"variants.{name}: serves {spec.model!r} on backend "
                            f"{spec.backend!r} like variant {first[0]} but with a different "
                            "tokenizer or context_window; give them the same")
    return problems


def _room_for_a_prompt(config: BotConfig) -> list[str]:
    """A served model's window must hold the answer and a prompt; else every question to the
    variant fails."""
    new_tokens = config.generation.max_new_tokens
    return [f"variants.{name}.context_window: {spec.context_window} leaves no room for a "
            f"prompt beside generation.max_new_tokens ({new_tokens}); set it to the served "
            "model's window, or lower max_new_tokens"
            for name, spec in config.variants.items()
            if spec.context_window is not None and spec.context_window <= new_tokens]


def _a_ranking_to_fuse(config: BotConfig) -> list[str]:
    """Weights only on the best-sentence ranking of an index without sentence vectors scored
    every hybrid hit 0, leaving them in the order they were indexed."""
    fusion = config.retrieval.fusion
    if config.index.sentence_vectors or fusion.dense_weight or fusion.bm25_weight:
        return []
    return ["retrieval.fusion: dense_weight and bm25_weight cannot both be 0 with "
            "index.sentence_vectors: false (sentence_weight has no ranking to weigh)"]


def _default_variant_exists(config: BotConfig) -> list[str]:
    if config.default_variant in config.variants:
        return []
    return [f"default_variant: {config.default_variant!r} is not one of the variants: "
            f"{', '.join(config.variants)}"]


def _ab_names_are_variants(config: BotConfig) -> list[str]:
    ab, problems = config.ab, []
    named = list(ab.weights) + [name for pair in ab.arena_pairs for name in pair]
    unknown = sorted({name for name in named if name not in config.variants})
    if unknown:
        problems.append(f"ab: unknown variant(s) {', '.join(unknown)} named; variants: "
                        f"{', '.join(config.variants)}")
    if any(a == b for a, b in ab.arena_pairs):
        problems.append("ab.arena_pairs: a pair needs two different variants")
    if ab.enabled and not config.logging.enabled:
        problems.append("ab.enabled: needs logging.enabled, as the sticky assignments and the "
                        "votes are kept in the log")
    return problems
