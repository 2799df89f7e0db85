"""Opening the files of the index generation in force, each checked as it is opened.

A file the manifest names that is missing or can't be read (deleted, emptied, cut short by a full
disk or a bad copy) is an :class:`IndexDamagedError` that names it and says what to do, instead of
a FAISS, SQLite or NumPy traceback halfway through a search or a sync.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from index import bm25, manifest
from index.docstore import Docstore
from index.errors import IndexDamagedError
from index.manifest import REBUILD, IndexFiles, IndexManifest
from index.text import shown

DOCSTORE_TABLES = frozenset({"files", "chunks"})
"""Tables every docstore has had; an emptied file opens as a database without them."""


def damaged(directory: Path, name: str, problem: str) -> IndexDamagedError:
    return IndexDamagedError(f"the index at {shown(directory)} is damaged: {name} {problem}; "
                             f"{REBUILD}")


def in_force(directory: Path, state: IndexManifest) -> IndexManifest:
    """``state`` once every file it names is there (one ``stat`` each: ``index list`` reads only
    the docstore). A missing one is damage, unless a sync committed meanwhile and removed the
    older files: then the manifest that sync wrote is used."""
    while (missing := _first_missing(directory, state.files)) is not None:
        latest = manifest.read(directory)
        if latest is None or latest.files == state.files:
            raise damaged(directory, missing, "is missing")
        state = latest
    return state


def _first_missing(directory: Path, files: IndexFiles) -> str | None:
    return next((name for name in sorted(files.names()) if not (directory / name).exists()),
                None)


def open_docstore(directory: Path, name: str) -> Docstore:
    """The committed docstore, read-only, with its tables there and readable."""
    path = directory / name
    if not path.is_file():
        raise damaged(directory, name, "is missing")
    if path.stat().st_size == 0:
        raise damaged(directory, name, "is empty, not a database")
    docstore = None
    try:
        docstore = Docstore(path)
        # Reading the schema reads page 1, and SQLite checks the file against the page count
        # recorded there: a file cut short fails here ("database disk image is malformed").
        absent = DOCSTORE_TABLES - docstore.tables()
    except sqlite3.DatabaseError as exc:  # OperationalError (can't open) included
        if docstore is not None:
            docstore.close()
        raise damaged(directory, name, f"is not a readable database ({exc})") from exc
    if absent:
        docstore.close()
        raise damaged(directory, name, "is not a readable database (no "
                      f"{' or '.join(sorted(absent))} table)")
    return docstore


def read_faiss(directory: Path, name: str):
    """The FAISS index in ``name``, read whole into memory."""
    import faiss

    path = directory / name
    if not path.is_file():
        raise damaged(directory, name, "is missing")
    try:
        return faiss.read_index(str(path))
    except RuntimeError as exc:  # what FAISS raises for a file it can't read
        raise damaged(directory, name, "is not a readable FAISS index") from exc


def open_bm25(directory: Path, name: str, analyzer: str) -> bm25.BM25Index:
    """The BM25 index saved in the folder ``name`` (memory-mapped)."""
    path = directory / name
    if not path.is_dir():
        raise damaged(directory, name, "is missing")
    try:
        return bm25.BM25Index(path, analyzer)
    except FileNotFoundError as exc:
        raise damaged(directory, f"{name}/{Path(exc.filename).name}", "is missing") from exc
    # np.load: OSError, EOFError (empty file), ValueError (cut short); a JSON error is a ValueError
    except (OSError, EOFError, ValueError) as exc:
        raise damaged(directory, name, f"is not a readable BM25 index ({exc})") from exc
