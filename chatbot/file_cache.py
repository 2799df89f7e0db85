"""Files read once and kept until they change: templates and adapter manifests are consulted on
every message, but rewritten only when someone edits or retrains them."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

T = TypeVar("T")


class FileCache(Generic[T]):
    """``read(path)`` results by path, read again when the file's mtime or size changes.

    A missing file raises ``FileNotFoundError`` from the check, as reading it would. Cached
    values are shared between callers: treat them as read-only.
    """

    def __init__(self, read: Callable[[Path], T]) -> None:
        self._read = read
        self._entries: dict[Path, tuple[tuple[int, int], T]] = {}
        self._lock = threading.Lock()

    def get(self, path: Path) -> T:
        key, stat = path.absolute(), path.stat()
        stamp = (stat.st_mtime_ns, stat.st_size)
        with self._lock:
            entry = self._entries.get(key)
        if entry is not None and entry[0] == stamp:
            return entry[1]
        value = self._read(path)
        with self._lock:
            self._entries[key] = (stamp, value)
        return value
