"""How the bot names a document wherever it shows one: the prompt, an answer's sources, the
API, the log and the web UI.

The index records each file by its absolute path on the server. Shown as is, that path tells any
visitor how the server is laid out, and spends prompt tokens on it. A file is shown by its path
from the folder holding the index root it was found under (``docs/leave/apply.md``,
``uploads/form.pdf``), and a file outside every root by its name alone.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from index.types import Hit


@dataclass(frozen=True)
class SourceNames:
    roots: tuple[Path, ...]
    """Absolute files and folders the bot indexes from (``index.paths`` and the uploads folder)."""

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


__all__ = ["SourceNames"]
