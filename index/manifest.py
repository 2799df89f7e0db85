"""The index manifest: what built the index, checked whenever it is opened.

``manifest.json`` is also the commit point of a sync: it names the FAISS, docstore and BM25 files
of the current generation and is replaced atomically (write, fsync, rename) after they are
complete, so a sync killed at any moment leaves the previous generation in force.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from index import jsonfile
from index.errors import IndexMismatchError

FORMAT = "chatbot-builder index"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
REBUILD = "re-index it: chatbot index sync --rebuild"
CONVERTIBLE = ("index_type", "hnsw_m")
"""Settings the next sync applies to the vectors already there, with no re-embedding."""


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


def read(directory: Path) -> dict | None:
    """The index manifest of ``directory``, ``None`` when there is no index there yet."""
    path = directory / MANIFEST
    if not path.exists():
        return None
    return jsonfile.read(path, IndexMismatchError, REBUILD)


def write(directory: Path, manifest: dict) -> None:
    """Replace the manifest atomically: a reader sees the old one or the new one, never half."""
    jsonfile.write_atomic(directory / MANIFEST, manifest, indent=1, sort_keys=True)


def settings_of(manifest: dict) -> IndexSettings:
    return IndexSettings(**{key: manifest.get(key) for key in IndexSettings.__dataclass_fields__})


def check(directory: Path, manifest: dict, expected: IndexSettings | None) -> None:
    """Raise :class:`IndexMismatchError` naming every difference, with what to do."""
    where = directory / MANIFEST
    version = manifest.get("format_version", 1)  # written before versions were recorded: 1
    if manifest.get("format") != FORMAT or version != FORMAT_VERSION:
        raise IndexMismatchError(
            f"{where}: index format {version!r}, this version reads {FORMAT_VERSION}; {REBUILD}")
    if expected is None:
        return
    found = asdict(settings_of(manifest))
    differences = [f"{key} is {found[key]!r} in the index but {value!r} in the config"
                   for key, value in asdict(expected).items()
                   if key not in CONVERTIBLE and value is not None and found[key] is not None
                   and found[key] != value]
    if differences:
        raise IndexMismatchError(f"{where}: built with other settings ({'; '.join(differences)}); "
                                 f"{REBUILD}")


def new(settings: IndexSettings) -> dict:
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "generation": 0,
            **asdict(settings), "files": {}, "documents": {}, "counts": {}, "updated_at": None}


CONTENT_KEYS = ("documents", "embedder", "dimension", "chunk_tokens", "chunk_overlap",
                "index_type", "faiss_type", "hnsw_m")


def content(manifest: dict) -> dict:
    """What searches of the index answer from: the documents' hashes and the index settings;
    not the generation or timestamp, which a sync that changed nothing still bumps."""
    return {key: manifest.get(key) for key in CONTENT_KEYS}
