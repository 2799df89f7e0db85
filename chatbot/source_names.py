"""How the bot names a document wherever it shows one: the prompt, an answer's sources, the
API, the log and the web UI.

The index records each file by its absolute path on the server. Shown as is, that path tells any
visitor how the server is laid out, and spends prompt tokens on it. A file is shown by its path
from the folder holding the index root it was found under (``docs/leave/apply.md``,
``uploads/form.pdf``); a file under a folder synced by path (``chatbot index sync
/srv/wiki``) is named from that folder's parent (``wiki/sales/faq.md``), as the index manifest
records those folders, and a file outside them all by its name alone.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from index import manifest
from index.errors import IndexingError
from index.generation_files import stamp
from index.types import Hit


@dataclass(frozen=True)
class SourceNames:
    roots: tuple[Path, ...]
    """Absolute files and folders the bot indexes from (``index.paths`` and the uploads folder),
    then the folders synced by path; a file is named from the first that holds it."""

    def name(self, source: str) -> str:
        path = Path(source)
        if not path.is_absolute():
            return source
        for root in self.roots:
            if path.is_relative_to(root):
                return path.relative_to(root.parent).as_posix()
        return path.name

    def paths(self, name: str) -> list[Path]:
        """The absolute paths a shown ``name`` (of a file or a folder) stands for, one per root
        that holds it: ``uploads/form.pdf`` is ``<data_dir>/uploads/form.pdf``."""
        found = (Path(os.path.abspath(root.parent / name)) for root in self.roots)
        return [path for path, root in zip(found, self.roots) if path.is_relative_to(root)]

    def hits(self, hits: Sequence[Hit]) -> list[Hit]:
        """``hits`` with each chunk's source named for showing."""
        return [replace(hit, chunk=replace(hit.chunk, source=self.name(hit.source)))
                for hit in hits]


class NamesInForce:
    """The :class:`SourceNames` of an index as its last sync left it: the folders synced by path
    are read from its manifest again only after another sync has committed (a ``stat`` a call,
    where reading the manifest at every search would parse every document's hash)."""

    def __init__(self, roots: tuple[Path, ...], directory: Path) -> None:
        self.roots = roots
        self.directory = directory
        self._seen: tuple[object, SourceNames] = (object(), SourceNames(roots))

    def __call__(self) -> SourceNames:
        now = stamp(self.directory / manifest.MANIFEST)
        seen, names = self._seen  # one tuple: threads searching at once read a whole pair
        if now != seen:
            names = SourceNames(self.roots + self._synced_folders())
            self._seen = (now, names)
        return names

    def _synced_folders(self) -> tuple[Path, ...]:
        try:
            state = manifest.read(self.directory)
        except IndexingError:  # the command reading the index says what is wrong with it
            return ()
        return tuple(Path(folder) for folder in state.folders) if state else ()


__all__ = ["NamesInForce", "SourceNames"]
