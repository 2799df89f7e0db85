"""The index manifest: what built the index, checked whenever it is opened.

``manifest.json`` is also the commit point of a sync: it names the FAISS, docstore and BM25 files
of the current generation and is replaced atomically (write, fsync, rename) after they are
complete, so a sync killed at any moment leaves the previous generation in force.
"""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path

from index import bm25, jsonfile
from index.context import NONE, TITLE_HEADINGS
from index.errors import IndexMismatchError
from index.text import shown

FORMAT = "chatbot-builder index"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
REBUILD = "re-index it: chatbot index sync --rebuild"
CONVERTIBLE = ("index_type", "hnsw_m", "bm25_analyzer")
"""Settings the next sync applies to the vectors already there, with no re-embedding (BM25 is
rebuilt from the stored texts at every sync)."""
LEGACY = {"context": NONE, "bm25_analyzer": bm25.STOPWORDS, "sentence_vectors": False}
"""What a manifest written before a setting was recorded was built with."""


@dataclass(frozen=True)
class IndexSettings:
    """Everything that must match between the index on disk and the code searching it."""

    embedder: str
    dimension: int | None
    """``None`` until known: filled in from the first vectors added."""
    chunk_tokens: int
    chunk_overlap: int
    index_type: str = "flat"
    hnsw_m: int = 32
    context: str = TITLE_HEADINGS
    """What is embedded and BM25-indexed above each chunk's text (``index/context.py``)."""
    bm25_analyzer: str = bm25.ENGLISH
    """How BM25 turns text into terms (``index/bm25.py``); queries use the same."""
    sentence_vectors: bool = True
    """Each chunk's sentences embedded too, for the best-sentence ranking
    (``index/sentence_vectors.py``)."""


@dataclass(frozen=True)
class IndexFiles:
    """The files of the generation in force, relative to the index directory."""

    docstore: str | None = None
    faiss: str | None = None
    """``None`` while the index holds no vectors."""
    bm25: str | None = None

    def names(self) -> set[str]:
        return {name for name in (self.docstore, self.faiss, self.bm25) if name}


@dataclass(frozen=True)
class IndexCounts:
    documents: int = 0
    chunks: int = 0


@dataclass(frozen=True)
class IndexManifest:
    """``manifest.json``; the settings are stored as top-level keys, ``format_version`` beside
    the ``format`` line."""

    settings: IndexSettings
    generation: int = 0
    files: IndexFiles = IndexFiles()
    documents: dict[str, str] = field(default_factory=dict)
    """Source -> SHA-256 of its bytes: a file that hashes the same is not read again."""
    counts: IndexCounts = IndexCounts()
    faiss_type: str | None = None
    """The FAISS index in use (``index_type: auto`` picks flat or hnsw by size)."""
    updated_at: str | None = None
    format_version: int = FORMAT_VERSION
    folders: tuple[str, ...] = ()
    """Folders syncs were given, sorted (a folder before those inside it), each kept while the
    index holds a file under it: the bot names such a file from the outermost one
    (``chatbot/source_names.py``). Empty in a manifest written before they were recorded."""

    @classmethod
    def load(cls, directory: Path) -> IndexManifest:
        """The manifest of ``directory``, or :class:`IndexMismatchError` naming the file and
        what is wrong with it."""
        path = directory / MANIFEST
        data = jsonfile.read(path, IndexMismatchError, REBUILD)
        version = data.get("format_version", 1)  # written before versions were recorded: 1
        jsonfile.check_version(path, version, FORMAT_VERSION, IndexMismatchError, REBUILD)
        if data.get("format") != FORMAT:
            raise IndexMismatchError(f"{shown(path)}: format {data.get('format')!r}, not "
                                     f"{FORMAT!r}; {REBUILD}")
        try:
            return cls(_record(IndexSettings, {**LEGACY, **data}), data.get("generation", 0),
                       _record(IndexFiles, data.get("files", {})), dict(data.get("documents", {})),
                       _record(IndexCounts, data.get("counts", {})), data.get("faiss_type"),
                       data.get("updated_at"), version, _folders(data.get("folders", [])))
        except (TypeError, ValueError) as exc:
            raise IndexMismatchError(f"{shown(path)}: {exc}; {REBUILD}") from None

    def save(self, directory: Path) -> None:
        """Replace the manifest atomically: a reader sees the old one or the new one, never half."""
        jsonfile.write_atomic(directory / MANIFEST, self.to_json(), indent=1, sort_keys=True)

    def to_json(self) -> dict:
        return {"format": FORMAT, "format_version": self.format_version,
                "generation": self.generation, **asdict(self.settings),
                "files": asdict(self.files), "documents": dict(self.documents),
                "counts": asdict(self.counts), "faiss_type": self.faiss_type,
                "updated_at": self.updated_at, "folders": list(self.folders)}

    def with_settings(self, **changes) -> IndexManifest:
        return replace(self, settings=replace(self.settings, **changes))

    def check(self, directory: Path, expected: IndexSettings | None) -> None:
        """Raise :class:`IndexMismatchError` naming every difference, with what to do."""
        if expected is None:
            return
        found = asdict(self.settings)
        differences = [_difference(key, found[key], value)
                       for key, value in asdict(expected).items()
                       if key not in CONVERTIBLE and value is not None and found[key] is not None
                       and found[key] != value]
        if differences:
            raise IndexMismatchError(f"{shown(directory / MANIFEST)}: built with other settings "
                                     f"({'; '.join(differences)}); {REBUILD}")

    def content(self) -> dict:
        """What searches of the index answer from: the documents' hashes and the index settings;
        not the generation or timestamp, which a sync that changed nothing still bumps. The
        folders name the documents in the prompt (left out where none is recorded, so an older
        index keeps its hash)."""
        return {"documents": dict(self.documents), **asdict(self.settings),
                "faiss_type": self.faiss_type,
                **({"folders": list(self.folders)} if self.folders else {})}


def _difference(key: str, found, expected) -> str:
    if key == "context" and found == NONE:
        return (f"its chunks were embedded without their document title and heading path "
                f"(context {found!r}; built before contextual chunks), the config wants "
                f"{expected!r}")
    if key == "sentence_vectors":
        return ("its chunks' sentences were not embedded (built with index.sentence_vectors "
                "off, or before sentence vectors), the config wants them" if expected else
                "it holds sentence vectors, the config turns them off (index.sentence_vectors)")
    return f"{key} is {found!r} in the index but {expected!r} in the config"


def read(directory: Path) -> IndexManifest | None:
    """The index manifest of ``directory``, ``None`` when there is no index there yet."""
    return IndexManifest.load(directory) if (directory / MANIFEST).exists() else None


def _folders(data) -> tuple[str, ...]:
    if not isinstance(data, list) or not all(isinstance(folder, str) for folder in data):
        raise TypeError("folders is not a list of paths")
    return tuple(data)


def _record(cls: type, data: dict):
    """``cls`` from the keys of ``data`` that are its fields; a missing one takes its default,
    and one without a default is an error naming it."""
    if not isinstance(data, dict):
        raise TypeError(f"{cls.__name__} is not a JSON object")
    missing = [f.name for f in fields(cls) if f.name not in data
               and f.default is MISSING and f.default_factory is MISSING]
    if missing:
        raise ValueError(f"{', '.join(missing)} missing")
    return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})
