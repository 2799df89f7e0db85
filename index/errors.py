"""Errors of the index package; each message says what went wrong, where, and what to do.

``index`` knows nothing of ``chatbot``: the CLI turns these into its own one-line errors.
"""


class IndexingError(Exception):
    """Base of every error this package raises on purpose."""


class IndexMismatchError(IndexingError):
    """The index on disk was built with other settings (embedder, dimension, chunking...)."""


class IndexMissingError(IndexingError):
    """There is no index at the given directory yet."""


class IndexDamagedError(IndexingError):
    """A file of the index in force is missing or unreadable; only a rebuild restores it."""


class LoadError(IndexingError):
    """One file could not be read as a document; ``reason`` is shown in the sync summary."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class EvalDataError(IndexingError):
    """A question file for ``chatbot index eval`` is unreadable or malformed."""
