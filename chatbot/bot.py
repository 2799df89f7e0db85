"""Turn a validated config into a running engine: the one place that reads the whole config.

Everything below takes flat arguments; only this builder knows the config's shape.
"""

from __future__ import annotations

from chatbot.config import BotConfig
from chatbot.engine import Engine, RetrievalPolicy
from chatbot.filters import build_filters
from chatbot.generate import GenerationSettings, TransformersGenerator
from chatbot.logs import ConversationLog
from chatbot.models import resolve_model
from chatbot.variants import Variant, adapter_manifest, registered_adapters


def build_variants(config: BotConfig) -> dict[str, Variant]:
    """The config's variants plus every registered adapter, each under its own name."""
    adapters_root = config.data_path / "adapters"
    variants = {}
    for name, spec in config.variants.items():
        adapter_dir = config.data_path / spec.adapter if spec.adapter else None
        variants[name] = Variant(name, spec.model or config.models.chat, spec.template,
                                 spec.retrieval, spec.k, adapter_dir)
    for name, adapter_dir in registered_adapters(adapters_root).items():
        if name not in variants:
            manifest = adapter_manifest(adapter_dir)
            variants[name] = Variant(name, manifest.get("base_model", config.models.chat),
                                     manifest.get("template") or "rag", True, None, adapter_dir)
    return variants


class IndexSearch:
    """The bot's index as the engine's ``search``; opened on first use, so a bot whose index is
    built after start-up (e.g. from the web UI) starts retrieving without a restart."""

    def __init__(self, config: BotConfig) -> None:
        self.config = config
        self.retriever = None

    def __call__(self, query: str, k: int) -> list:
        from chatbot.indexing import open_retriever

        if self.retriever is None:
            self.retriever = open_retriever(self.config)
            if self.retriever is None:
                return []
        return self.retriever.search(query, k=k)


def generation_settings(config: BotConfig) -> GenerationSettings:
    gen = config.generation
    return GenerationSettings(gen.max_new_tokens, gen.temperature, gen.top_p,
                              gen.repetition_penalty)


def build_engine(config: BotConfig, search=None) -> Engine:
    """An engine for ``config``; ``search(query, k) -> list[Hit]`` defaults to the bot's index."""
    search = search or IndexSearch(config)

    def load_generator(model: str) -> TransformersGenerator:
        return TransformersGenerator(resolve_model(model, config.base_dir), model,
                                     config.models.device, config.models.dtype,
                                     config.models.threads)

    log = ConversationLog(config.data_path / "logs.sqlite") if config.logging.enabled else None
    return Engine(
        build_variants(config), load_generator, search=search, log=log,
        filters=build_filters(config.filters.blocklist, config.filters.replacement,
                              config.filters.redact_pii),
        settings=generation_settings(config),
        retrieval=RetrievalPolicy(config.retrieval.k, config.retrieval.no_hits,
                                  config.retrieval.refusal),
        max_message_chars=config.generation.max_message_chars,
        default_variant=config.default_variant, bot_name=config.name)
