"""Turn a validated config into the objects the bot runs on: the one place that reads it.

Each builder returns a flat record or a ready object (engine, index, documents, dataset build
settings, evaluation settings, training request); ``chatbot``, ``index`` and ``training`` take
only those, never the config.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping

from chatbot.adapters import registered_adapters, servable_manifest
from chatbot.attribution import AttributionSettings, Attributor
from chatbot.answer_stream import RetrievalPolicy
from chatbot.batching import BatchingTransformersGenerator
from chatbot.config import BotConfig
from chatbot.documents import BotDocuments
from chatbot.errors import InputError, ModelError
from chatbot.engine import Engine
from chatbot.filters import build_filters
from chatbot.generate import GenerationSettings, Generator, TransformersGenerator
from chatbot.indexing import (HASH_PREFIX, BotIndex, EmbedderSpec, IndexSearch, SearchSettings,
                              open_embedder, open_retriever)
from chatbot.logs import ConversationLog
from chatbot.models import resolve_model
from chatbot.paths import DataPaths
from chatbot.retrieval_query import QueryPolicy
from chatbot.variants import Variant
from index.context import NONE as NO_CONTEXT
from index.context import TITLE_HEADINGS
from index.embed import Embedder
from index.fusion import Fusion
from index.manifest import IndexSettings
from training.data.settings import DataSettings
from training.data.steps import CurateOptions
from training.data.transcripts import QAFields
from training.eval.settings import EvalSettings

logger = logging.getLogger(__name__)


def configured_variants(config: BotConfig) -> dict[str, Variant]:
    """The variants the config names."""
    paths = DataPaths(config.data_path)
    return {name: Variant(name, spec.model or config.models.chat,
                          config.template_ref(spec.template), spec.retrieval, spec.k,
                          paths.root / spec.adapter if spec.adapter else None, spec.backend)
            for name, spec in config.variants.items()}


def build_variants(config: BotConfig) -> dict[str, Variant]:
    """The config's variants plus every registered adapter, each under its own name."""
    variants = configured_variants(config)
    for name, adapter_dir in registered_adapters(DataPaths(config.data_path).adapters).items():
        if name not in variants:
            try:
                manifest = servable_manifest(adapter_dir)
            except ModelError as exc:  # one damaged adapter must not take the bot down
                logger.warning("adapter %s is not served: %s", name, exc)
                continue
            variants[name] = manifest.variant(name, adapter_dir,
                                              manifest.base_model or config.models.chat,
                                              manifest.template or "rag")
    return variants


def generation_settings(config: BotConfig) -> GenerationSettings:
    gen = config.generation
    return GenerationSettings(gen.max_new_tokens, gen.temperature, gen.top_p,
                              gen.repetition_penalty, max_prompt_tokens=gen.max_prompt_tokens)


def _answer_log(config: BotConfig) -> ConversationLog:
    """The log the engine writes every answer to, refused now if it can't be written."""
    log = ConversationLog(DataPaths(config.data_path).logs)
    log.check_writable()
    return log


def build_engine(config: BotConfig, search=None, *, log: bool = True,
                 extra_variants: Mapping[str, Variant] | None = None,
                 embedder: Embedder | None = None) -> Engine:
    """An engine for ``config``; ``search(query, k) -> list[Hit]`` defaults to the bot's index.
    ``log=False`` leaves the conversation log out whatever the config says. ``embedder`` (the
    index's, loaded on first use if not given) serves retrieval and attribution alike."""
    embedder = embedder or open_embedder(embedder_spec(config))
    search = search or IndexSearch(bot_index(config), embedder)
    models = config.models
    backends: dict[str, object] = {}  # one per name: its concurrency cap covers all its models

    def load_generator(model: str, backend: str | None = None) -> Generator:
        if backend is None:
            path = resolve_model(model, config.base_dir)
            if models.max_batch == 1:
                return TransformersGenerator(path, model, models.device, models.dtype,
                                             models.threads, models.queue_timeout_s)
            return BatchingTransformersGenerator(path, model, models.device, models.dtype,
                                                 models.threads, models.max_batch,
                                                 models.queue_timeout_s)
        from chatbot.remote import OpenAIGenerator  # openai loads only if used
        from chatbot.remote_backend import RemoteBackend

        if backend not in backends:
            spec = config.backends[backend]
            backends[backend] = RemoteBackend(backend, spec.base_url, spec.api_key_env,
                                              spec.timeout_s, spec.max_concurrency,
                                              spec.queue_timeout_s)
        variant = next(v for v in config.variants.values()
                       if (v.backend, v.model) == (backend, model))
        tokenizer = (resolve_model(variant.tokenizer, config.base_dir)
                     if variant.tokenizer else None)
        return OpenAIGenerator(backends[backend], model, tokenizer, variant.context_window)

    logging = log and config.logging.enabled
    return Engine(
        {**build_variants(config), **(extra_variants or {})}, load_generator, search=search,
        log=_answer_log(config) if logging else None,
        filters=build_filters(config.filters.blocklist, config.filters.replacement,
                              config.filters.redact_pii),
        settings=generation_settings(config),
        retrieval=RetrievalPolicy(config.retrieval.k, config.retrieval.no_hits,
                                  config.retrieval.refusal,
                                  QueryPolicy(config.retrieval.query.mode,
                                              config.retrieval.query.turns)),
        max_message_chars=config.generation.max_message_chars,
        default_variant=config.default_variant, bot_name=config.name,
        attributor=build_attributor(config, embedder),
        find_variants=lambda: build_variants(config))


def build_attributor(config: BotConfig, embedder: Embedder) -> Attributor | None:
    """The ``attribution:`` section over the index's own embedder; the hash stand-in
    (``hash:N``) knows no meaning, so with it attribution is lexical."""
    spec = config.attribution
    if not spec.enabled:
        return None
    meaningful = None if config.models.embedder.startswith(HASH_PREFIX) else embedder
    return Attributor(meaningful, AttributionSettings(spec.policy, spec.min_support,
                                                      spec.sentence_threshold,
                                                      spec.withheld_message))


def embedder_spec(config: BotConfig) -> EmbedderSpec:
    return EmbedderSpec(config.models.embedder, config.base_dir, config.models.device,
                        config.index.batch_size, config.models.embedder_dtype,
                        config.models.embedder_runtime)


def bot_index(config: BotConfig) -> BotIndex:
    """Where the bot's index is, how it is built (``index:``) and searched (``retrieval:``)."""
    ix, retrieval, fusion = config.index, config.retrieval, config.retrieval.fusion
    return BotIndex(
        directory=DataPaths(config.data_path).index,
        settings=IndexSettings(embedder=config.models.embedder, dimension=None,
                               chunk_tokens=ix.chunk_tokens, chunk_overlap=ix.chunk_overlap,
                               index_type=ix.index_type, hnsw_m=ix.hnsw_m,
                               context=TITLE_HEADINGS if ix.contextual else NO_CONTEXT,
                               sentence_vectors=ix.sentence_vectors),
        embedder=embedder_spec(config),
        search=SearchSettings(retrieval.mode, retrieval.k, retrieval.min_score, retrieval.mmr,
                              ix.hnsw_ef_search, retrieval.rerank.model,
                              retrieval.rerank.candidates,
                              fusion=Fusion(fusion.method, fusion.dense_weight, fusion.bm25_weight,
                                            fusion.sentence_weight),
                              merge_neighbours=retrieval.merge_neighbours,
                              merge_max_words=retrieval.merge_max_words),
        paths=tuple(config.resolve(p) for p in ix.paths), include=tuple(ix.include),
        exclude=tuple(ix.exclude), max_file_bytes=int(ix.max_file_mb * 2**20),
        text_field=ix.text_field, upload_dir=DataPaths(config.data_path).uploads)


def bot_documents(config: BotConfig, embedder: Embedder | None = None) -> BotDocuments:
    """The Documents tab's and the engine's shared view of the index; uploads go to
    ``<data_dir>/uploads``."""
    index = bot_index(config)
    return BotDocuments(index, index.upload_dir, embedder)


def options_from_config(config: BotConfig) -> CurateOptions:
    """The curation steps' settings from the ``data:`` section (plus the bot's own refusals)."""
    data = config.data
    refusals = list(data.refusal_patterns)
    for text in (config.retrieval.refusal, config.filters.replacement,
                 config.attribution.withheld_message):
        refusals.append("^" + re.escape(text.strip().rstrip(".!")) + r"\W*$")
    return CurateOptions(
        feedback=data.feedback, corrections=data.corrections, min_tokens=data.min_tokens,
        max_tokens=data.max_tokens,
        refusal_patterns=tuple(refusals), near_duplicate_threshold=data.near_duplicate_threshold,
        minhash_permutations=data.minhash_permutations, pii_kinds=tuple(data.pii_kinds),
        phone_region=data.phone_region, phone_regions=tuple(data.phone_regions),
        pii_ner_model=data.pii_ner_model, validation_share=data.validation_share, seed=data.seed)


def data_settings(config: BotConfig) -> DataSettings:
    """What ``chatbot data build`` and the Training tab build datasets with."""
    data, paths = config.data, DataPaths(config.data_path)
    default_template = config.variants[config.default_variant].template
    return DataSettings(
        datasets_root=paths.datasets, log_path=paths.logs, bot_name=config.name,
        chat_model=config.models.chat, model_base_dir=config.base_dir,
        template=config.template_ref(data.template or default_template),
        variant_templates={name: config.template_ref(spec.template)
                           for name, spec in config.variants.items()},
        default_variant_template=config.template_ref(default_template),
        options=options_from_config(config),
        qa_fields=QAFields(data.question_field, data.answer_field, data.system_field),
        render_with_template=data.render_with_template, log_sources=data.log_sources)


def eval_settings(config: BotConfig) -> EvalSettings:
    """What ``chatbot eval`` and the training gate evaluate with."""

    def engine(embedder: Embedder | None, extra: Mapping[str, Variant]) -> Engine:
        retriever = open_retriever(bot_index(config), embedder)
        search = (lambda query, k: retriever.search(query, k=k)) if retriever else None
        return build_engine(config, search, log=False, extra_variants=extra, embedder=embedder)

    paths = DataPaths(config.data_path)
    return EvalSettings(data_dir=paths.root, index_dir=paths.index,
                        retrieval=config.retrieval.model_dump(), chat_model=config.models.chat,
                        embedder=embedder_spec(config), engine=engine,
                        variants=configured_variants(config), model_base_dir=config.base_dir)


def check_adapter_name(config: BotConfig, name: str) -> None:
    """An adapter may not take a name of the config's variants: the variant keeps its name
    (``build_variants``), so the adapter would never be served."""
    if name in config.variants:
        raise InputError(f"{name!r} is a variant of the config (variants: "
                         f"{', '.join(config.variants)}), which keeps that name: an adapter "
                         "registered under it would never be served; choose another name")


def training_request(config: BotConfig, dataset: str, name: str, resume: bool, given: dict):
    """The config's ``training:`` section with ``given`` (checked values by key) applied, as a
    flat request. On ``resume`` the settings the run recorded when it started stand in for the
    config's, so ``--resume`` alone continues the run as it began."""
    check_adapter_name(config, name)
    from training.train.finetune import FinetuneRequest, started_settings
    from training.train.loop import LoopSettings
    from training.train.model_setup import MethodSettings

    values = config.training.model_dump()
    if resume:
        recorded = started_settings(DataPaths(config.data_path).run(name))
        values.update({key: value for key, value in recorded.items() if key in values})
    values.update(given)
    targets = values["target_modules"]
    if isinstance(targets, list):  # recorded as the request's tuple of names
        targets = ",".join(targets)
    method = MethodSettings(
        method=values["method"], lora_r=values["lora_r"], lora_alpha=values["lora_alpha"],
        lora_dropout=values["lora_dropout"], train_blocks=values["train_blocks"],
        target_modules=targets if targets == "all-linear" else tuple(
            part.strip() for part in targets.split(",") if part.strip()))
    loop = LoopSettings(**{key: values[key] for key in (
        "epochs", "max_steps", "learning_rate", "batch_size", "grad_accum", "warmup",
        "scheduler", "weight_decay", "seed", "eval_every", "patience")})
    return FinetuneRequest(
        data_dir=config.data_path, dataset=dataset, name=name, base_model=config.models.chat,
        base_dir=config.base_dir, method=method, loop=loop, max_seq_len=values["max_seq_len"],
        masking=values["masking"], device=values["device"], dtype=values["dtype"],
        gradient_checkpointing=values["gradient_checkpointing"], resume=resume,
        quantize=values["quantize"], distributed=values["distributed"],
        compile=values["compile"],
        threads=values["threads"])
