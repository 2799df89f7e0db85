"""One training run of a name at a time.

Two ``chatbot train --name X`` at once (two terminals, or a terminal and the web UI) would share
``<data_dir>/runs/X`` and ``adapters/X``: the second would empty the first one's checkpoints,
or take them for an interrupted run. The first holds ``<data_dir>/.train-X.lock``, which the
system releases when its process ends, however it ends; the second is refused. The file is
removed while still held, at the end of the run, so a run leaves none behind (filelock takes
a file removed under it for a free one and opens the path again).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from chatbot.paths import DataPaths, check_name
from training.errors import TrainingError
from training.train.checkpoint import disk_error, rerun_advice


@contextlib.contextmanager
def run_alone(data_dir: Path, name: str) -> Iterator[None]:
    """Hold run ``name``'s lock for the block, or refuse; under ``torchrun`` rank 0 holds it
    for the processes of its run."""
    if os.environ.get("RANK", "0") != "0":
        yield
        return
    from filelock import FileLock, Timeout

    path = Path(data_dir) / f".train-{check_name('adapter', name)}.lock"
    lock = FileLock(str(path))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock.acquire(timeout=0)
    except Timeout:
        raise TrainingError(f"a run named {name!r} is training in another process (it holds "
                            f"{path}); wait for it to end, or give another --name") from None
    except OSError as exc:
        raise disk_error(path, exc, rerun_advice(DataPaths(data_dir).run(name))) from None
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
        lock.release()
