"""The index package built from the bot config: what the CLI, the engine and the web UI call.

Builders turn the config into the flat arguments of ``index/``; errors of that package come out
as :class:`DocumentIndexError`, which the CLI prints as one line.

    chatbot index sync          # the config's index.paths
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Callable

from chatbot.config import BotConfig
from chatbot.errors import DocumentIndexError
from index.embed import Embedder, HashEmbedder, SentenceTransformerEmbedder
from index.errors import IndexingError, IndexMissingError
from index.manifest import IndexSettings
from index.search import Retriever
from index.store import Store
from index.sync import Progress, SyncReport, sync
from index.types import DocumentInfo

HASH_PREFIX = "hash:"  # models.embedder "hash:64": a model-free embedder for smoke tests


def _index_errors(func: Callable) -> Callable:
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except IndexingError as exc:
            raise DocumentIndexError(str(exc)) from exc

    return wrapper


def index_dir(config: BotConfig) -> Path:
    return config.data_path / "index"


def open_embedder(config: BotConfig) -> Embedder:
    """The configured embedder; the model itself loads on first use."""
    name = config.models.embedder
    if name.startswith(HASH_PREFIX):
        return HashEmbedder(int(name.removeprefix(HASH_PREFIX)))
    from chatbot.models import resolve_model

    return SentenceTransformerEmbedder(resolve_model(name, config.base_dir), name=name,
                                       device=config.models.device,
                                       batch_size=config.index.batch_size)


def index_settings(config: BotConfig) -> IndexSettings:
    """What the index must have been built with; the dimension is checked when vectors meet."""
    return IndexSettings(embedder=config.models.embedder, dimension=None,
                         chunk_tokens=config.index.chunk_tokens,
                         chunk_overlap=config.index.chunk_overlap,
                         index_type=config.index.index_type, hnsw_m=config.index.hnsw_m)


@_index_errors
def open_store(config: BotConfig, create: bool = False) -> Store:
    return Store.open(index_dir(config), index_settings(config), create=create)


@_index_errors
def open_retriever(config: BotConfig, embedder: Embedder | None = None) -> Retriever | None:
    """A retriever with the config's retrieval settings, or ``None`` while nothing is indexed."""
    try:
        store = Store.open(index_dir(config), index_settings(config))
    except IndexMissingError:
        return None
    if not store.manifest["counts"].get("chunks"):
        return None
    retrieval = config.retrieval
    return Retriever(store, embedder or open_embedder(config), mode=retrieval.mode,
                     k=retrieval.k, min_score=retrieval.min_score, mmr=retrieval.mmr,
                     ef_search=config.index.hnsw_ef_search)


@_index_errors
def sync_paths(config: BotConfig, paths: list[str | Path] | None = None,
               progress: Progress | None = None, rebuild: bool = False,
               embedder: Embedder | None = None) -> SyncReport:
    """Sync ``paths`` (default: the config's ``index.paths``) into the bot's index."""
    settings = index_settings(config)
    targets = [Path(p) for p in paths] if paths else [config.resolve(p) for p in config.index.paths]
    directory = index_dir(config)
    store = Store(directory, {}) if rebuild else Store.open(directory, settings, create=True)
    return sync(targets, store, embedder or open_embedder(config),
                include=config.index.include, exclude=config.index.exclude,
                max_file_bytes=int(config.index.max_file_mb * 2**20),
                text_field=config.index.text_field, progress=progress,
                rebuild=settings if rebuild else None)


@_index_errors
def list_documents(config: BotConfig) -> list[DocumentInfo]:
    try:
        return Store.open(index_dir(config)).documents()
    except IndexMissingError:
        return []


@_index_errors
def remove_documents(config: BotConfig, path: str | Path) -> list[str]:
    """Drop every indexed file at or under ``path``; returns their sources."""
    target = os.path.abspath(path)
    store = Store.open(index_dir(config), index_settings(config))
    removed: list[str] = []
    with store.transaction():
        for source in list(store.manifest["documents"]):
            if source == target or source.startswith(target.rstrip(os.sep) + os.sep):
                store.remove(source)
                removed.append(source)
    if not removed:
        raise DocumentIndexError(f"nothing indexed at or under {target}; "
                                 "see `chatbot index list`")
    return removed


@_index_errors
def index_stats(config: BotConfig) -> dict:
    return Store.open(index_dir(config)).stats()
