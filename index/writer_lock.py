"""The lock that lets one sync at a time write an index; searches never take it.

A second sync waits for the first, and says so at once instead of seeming hung.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Callable, Iterator

logger = logging.getLogger(__name__)

LOCK = ".lock"
SILENT_WAIT_S = 1.0


@contextlib.contextmanager
def writer_lock(directory: Path, waiting: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold ``directory``'s writer lock for the block; ``waiting()`` is called when another
    sync holds it, so a caller with no log to show (the web UI) can say why nothing moves."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(directory / LOCK))
    try:
        lock.acquire(timeout=SILENT_WAIT_S)
    except Timeout:
        logger.warning("waiting for another sync of %s to finish (it holds %s)", directory,
                       lock.lock_file)
        if waiting is not None:
            waiting()
        lock.acquire()
    try:
        yield
    finally:
        lock.release()
