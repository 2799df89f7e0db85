"""The bot's document index: what the CLI, the engine and the web UI call.

A :class:`BotIndex` record (built from the config by ``app.build.bot_index``) carries the flat
arguments of ``index/``; errors of that package come out as :class:`DocumentIndexError`, which
the CLI prints as one line.

    chatbot index sync          # the config's index.paths
"""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from chatbot.errors import DocumentIndexError
from chatbot.interrupts import raise_if_interrupted
from chatbot.source_names import NamesInForce, SourceNames
from index.embed import Embedder, HashEmbedder, SentenceTransformerEmbedder
from index.errors import IndexingError, IndexMissingError
from index.evaluate import EvalReport, evaluate, gold_not_indexed, load_questions
from index.fusion import Fusion
from index.manifest import IndexManifest, IndexSettings
from index.passages import MAX_WORDS
from index.rerank import CrossEncoderScorer, RerankingRetriever
from index.search import Retriever
from index.store import Store, read_in_force
from index.sync import Embedding, Progress, SyncReport, keep_folders_holding_files, sync, \
    under
from index.text import shown
from index.types import DocumentInfo

HASH_PREFIX = "hash:"  # models.embedder "hash:64": a model-free embedder for smoke tests


def index_errors(func: Callable) -> Callable:
    """``func`` with the index package's errors raised as :class:`DocumentIndexError`. Its
    first argument is the :class:`BotIndex`, or (a method) an object holding it as ``index``:
    the error learns the data folder that its public message leaves out."""
    @functools.wraps(func)
    def wrapper(first, *args, **kwargs):
        try:
            return func(first, *args, **kwargs)
        except IndexingError as exc:
            index = first if isinstance(first, BotIndex) else first.index
            raise DocumentIndexError(str(exc), index.directory.parent) from exc

    return wrapper


@dataclass(frozen=True)
class EmbedderSpec:
    """Which embedder to open, and where and how it runs."""

    name: str
    base_dir: Path
    """Where a relative model directory is found (the config's folder)."""
    device: str = "auto"
    batch_size: int = 16
    dtype: str = "auto"
    """``auto``, ``float32`` or ``bfloat16``: what the model computes in (the vectors are
    float32); ``auto`` is bfloat16 on a CPU with bf16 instructions."""
    runtime: str = "auto"
    """``auto``, ``torch`` or ``onnx`` (ONNX Runtime, exported once into the model cache)."""


@dataclass(frozen=True)
class SearchSettings:
    """How the bot retrieves: the ``retrieval:`` settings plus the HNSW search breadth."""

    mode: str = "hybrid"
    k: int = 4
    min_score: float | None = None
    mmr: bool = False
    ef_search: int = 128
    rerank_model: str | None = None
    """Cross-encoder that re-orders ``rerank_candidates`` hits; ``None`` keeps the search order."""
    rerank_candidates: int = 30
    fusion: Fusion = Fusion()
    """How ``hybrid`` fuses the dense, BM25 and best-sentence rankings (method and weights)."""
    merge_neighbours: bool = True
    """Consecutive chunks of one document found together become one passage."""
    merge_max_words: int = MAX_WORDS
    """Words a merged passage may reach."""


@dataclass(frozen=True)
class BotIndex:
    """Everything the bot's index operations need: where it is, how it is built and searched."""

    directory: Path
    settings: IndexSettings
    """What the index must have been built with; the dimension is checked when vectors meet."""
    embedder: EmbedderSpec
    search: SearchSettings
    paths: tuple[Path, ...] = ()
    """What ``sync_paths`` reads when given no paths."""
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    max_file_bytes: int = 50 * 2**20
    text_field: str = "text"
    upload_dir: Path | None = None
    """Where the web UI keeps uploaded files; they are indexed beside ``paths``."""

    @property
    def names(self) -> SourceNames:
        """How its documents are named where the bot shows them, as its last sync left it."""
        return self._names_in_force()

    @functools.cached_property
    def _names_in_force(self) -> NamesInForce:
        roots = self.paths + ((self.upload_dir,) if self.upload_dir else ())
        return NamesInForce(tuple(Path(os.path.abspath(root)) for root in roots), self.directory)

    def is_upload(self, source: str) -> bool:
        """Whether ``source`` is a web UI upload: a file kept only to be indexed."""
        return self.upload_dir is not None and Path(os.path.abspath(source)).is_relative_to(
            os.path.abspath(self.upload_dir))


def open_embedder(spec: EmbedderSpec) -> Embedder:
    """The configured embedder; the model itself loads on first use."""
    if spec.name.startswith(HASH_PREFIX):
        return HashEmbedder(int(spec.name.removeprefix(HASH_PREFIX)))
    from chatbot.models import cache_dir, resolve_model

    return SentenceTransformerEmbedder(resolve_model(spec.name, spec.base_dir), name=spec.name,
                                       device=spec.device, batch_size=spec.batch_size,
                                       dtype=spec.dtype, runtime=spec.runtime,
                                       onnx_cache=cache_dir() / "onnx")


@index_errors
def open_retriever(index: BotIndex, embedder: Embedder | None = None
                   ) -> Retriever | RerankingRetriever | None:
    """A retriever with the bot's search settings (reranking included), or ``None`` while
    nothing is indexed."""
    try:  # a damaged index is reported now, not by the first search
        store = read_in_force(index.directory, _verified_unless_empty, index.settings)
    except IndexMissingError:
        return None
    if store is None:
        return None
    search = index.search
    retriever = Retriever(store, embedder or open_embedder(index.embedder), mode=search.mode,
                          k=search.k, min_score=search.min_score, mmr=search.mmr,
                          ef_search=search.ef_search, fusion=search.fusion,
                          merge_neighbours=search.merge_neighbours,
                          merge_max_words=search.merge_max_words)
    if search.rerank_model is None:
        return retriever
    from chatbot.models import resolve_model

    scorer = CrossEncoderScorer(resolve_model(search.rerank_model, index.embedder.base_dir),
                                device=index.embedder.device)
    return RerankingRetriever(retriever, scorer, search.rerank_candidates)


def _verified_unless_empty(store: Store) -> Store | None:
    return store.verify() if store.manifest.counts.chunks else None


def nothing_indexed(index: BotIndex) -> bool:
    """Whether the bot's index is missing or empty, so answers can use no documents; an index
    that can't be read counts as there (its first search says what is wrong)."""
    try:
        return read_in_force(index.directory, lambda store: not store.manifest.counts.chunks,
                             index.settings)
    except IndexMissingError:
        return True
    except IndexingError:
        return False


class IndexSearch:
    """The bot's index as the engine's ``search``; opened on first use, so a bot whose index is
    built after start-up (e.g. from the web UI) starts retrieving without a restart."""

    def __init__(self, index: BotIndex, embedder: Embedder | None = None) -> None:
        self.index = index
        self.embedder = embedder
        """Shared with the rest of the bot (attribution); ``None`` opens the index's own."""
        self.retriever = None

    @index_errors
    def __call__(self, query: str, k: int) -> list:
        if self.retriever is None:
            self.retriever = open_retriever(self.index, self.embedder)
            if self.retriever is None:
                return []
        return self.index.names.hits(self.retriever.search(query, k=k))


@index_errors
def sync_paths(index: BotIndex, paths: list[str | Path] | None = None,
               progress: Progress | None = None, rebuild: bool = False,
               embedder: Embedder | None = None,
               waiting: Callable[[], None] | None = None,
               embedding: Embedding | None = None) -> SyncReport:
    """Sync ``paths`` (default: the index's own ``paths``) into the bot's index; ``waiting()``
    is called if another sync holds it, ``embedding(done, total)`` as chunks are embedded."""
    settings = index.settings
    targets = [Path(p) for p in paths] if paths else list(index.paths)
    directory = index.directory
    store = (Store(directory, IndexManifest(settings)) if rebuild
             else Store.open(directory, settings, create=True))
    return sync(targets, store, embedder or open_embedder(index.embedder),
                include=list(index.include), exclude=list(index.exclude),
                max_file_bytes=index.max_file_bytes, text_field=index.text_field,
                progress=_stopping_at_ctrl_c(progress), rebuild=settings if rebuild else None,
                waiting=waiting, embedding=_embedding_stopping_at_ctrl_c(embedding))


def _stopping_at_ctrl_c(progress: Progress | None) -> Progress:
    """``progress``, after raising a Ctrl-C that Python dropped inside a garbage-collection
    callback (``chatbot/interrupts.py``): the sync stops at the next file and commits
    nothing, instead of running on to its end."""
    def report(done: int, total: int, source: str) -> None:
        raise_if_interrupted()
        if progress is not None:
            progress(done, total, source)

    return report


def _embedding_stopping_at_ctrl_c(embedding: Embedding | None) -> Embedding:
    """``embedding``, after raising a dropped Ctrl-C as ``_stopping_at_ctrl_c`` does: one
    large file's chunks are minutes of embedding, stopped at the next slice of them."""
    def report(done: int, total: int) -> None:
        raise_if_interrupted()
        if embedding is not None:
            embedding(done, total)

    return report


@index_errors
def evaluate_index(index: BotIndex, data: Path, ks: tuple[int, ...], mode: str | None = None,
                   progress: Callable[[int, int], None] | None = None) -> EvalReport:
    """Context hit@k, evidence recall@k and MRR of the bot's own retrieval (mode, fusion,
    threshold, merging, reranking) on the questions in ``data``."""
    questions = load_questions(data)
    retriever = open_retriever(index)
    if retriever is None:
        raise DocumentIndexError("nothing is indexed yet; run `chatbot index sync PATH` first")
    report = evaluate(lambda query, k: index.names.hits(retriever.search(query, k=k, mode=mode)),
                      questions.questions, ks, progress)
    chunks = retriever.store.docstore.all_chunks()[1]
    return replace(report, not_answerable=questions.not_answerable, left_out=questions.left_out,
                   not_indexed=gold_not_indexed(questions.questions, chunks),
                   warnings=questions.warnings)


@index_errors
def list_documents(index: BotIndex) -> list[DocumentInfo]:
    try:
        return read_in_force(index.directory, Store.documents)
    except IndexMissingError:
        return []


@index_errors
def remove_documents(index: BotIndex, path: str | Path,
                     waiting: Callable[[], None] | None = None) -> list[str]:
    """Drop every indexed file at or under ``path``, and delete those that were web UI uploads
    (kept only to be indexed; the command line and the web UI remove alike); returns their
    sources. ``waiting()`` is called if a sync holds the index."""
    store = Store.open(index.directory, index.settings)
    targets = _removal_targets(index, store, path)
    real_targets = [os.path.realpath(target) for target in targets]
    removed: list[str] = []
    with store.transaction(waiting=waiting):
        held = dict(store.hashes)
        for source in list(store.hashes):
            # A sync names a file by the path it reached it by, links and all: a link to an
            # indexed folder, or the real folder of one synced through a link, names it too.
            if under(source, targets) or under(os.path.realpath(source), real_targets):
                store.remove(source)
                removed.append(source)
        keep_folders_holding_files(store, store.manifest.folders)
    if not removed:
        raise DocumentIndexError(f"nothing indexed at or under "
                                 f"{' or '.join(map(shown, targets))}; "
                                 "see `chatbot index list`")
    for source in filter(index.is_upload, removed):  # after the commit: the index never
        _delete_upload(Path(source), held[source])    # names a file that is gone
    return removed


def _delete_upload(path: Path, indexed_hash: str) -> None:
    """Delete the upload at ``path`` if it still holds what was indexed: one uploaded again
    under its name meanwhile is kept for the sync that indexes it."""
    try:
        if hashlib.sha256(path.read_bytes()).hexdigest() == indexed_hash:
            path.unlink()
    except FileNotFoundError:
        pass


def _removal_targets(index: BotIndex, store: Store, path: str | Path) -> list[str]:
    """``path`` from the current folder; where nothing is there, on disk or in the index, also
    what the bot shows by that name (as ``chatbot index list`` does): ``uploads/notes.md`` is a
    web UI upload, kept in the data folder, and ``handbook.md`` a file synced from outside
    ``index.paths``."""
    target = os.path.abspath(path)
    if os.path.exists(target) or any(under(source, [target]) for source in store.hashes):
        return [target]
    named = [source for source in store.hashes if index.names.name(source) == str(path)]
    if len(named) > 1:  # files of one name synced from outside index.paths
        raise DocumentIndexError(f"{shown(path)} names {len(named)} documents "
                                 f"({', '.join(map(shown, named))}); give the path of the one "
                                 "to remove")
    return list(dict.fromkeys([target, *map(str, index.names.paths(str(path))), *named]))


@index_errors
def index_stats(index: BotIndex) -> dict:
    return read_in_force(index.directory, Store.stats)
