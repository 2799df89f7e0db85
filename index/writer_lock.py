"""The lock that lets one sync at a time write an index; searches never take it.

A second sync waits for the first, and says so at once instead of seeming hung.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Iterator

logger = logging.getLogger(__name__)

LOCK = ".lock"
SILENT_WAIT_S = 1.0


@contextlib.contextmanager
def writer_lock(directory: Path) -> Iterator[None]:
    """Hold ``directory``'s writer lock for the block."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(directory / LOCK))
    try:
        lock.acquire(timeout=SILENT_WAIT_S)
    except Timeout:
        logger.warning("waiting for another sync of %s to finish (it holds %s)", directory,
                       lock.lock_file)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()
