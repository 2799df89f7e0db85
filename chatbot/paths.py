"""Where a bot keeps its state: every file and folder under its data dir, named in one place.

    paths = DataPaths(config.data_path)
    paths.logs                                # <data_dir>/logs.sqlite
    paths.adapter("v2")                       # <data_dir>/adapters/v2
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from chatbot.errors import InputError

NAME_CHARS = 64
FOLDER_NAME = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{NAME_CHARS - 1}}}\Z")
"""A dataset, adapter, run, eval or sweep name: one folder inside its kind's folder, never a
path that leads out of it (``../x``, ``a/b``, ``/abs``)."""


def check_name(kind: str, name: str) -> str:
    """``name``, or an error saying which names a ``kind`` (``dataset``, ...) may have."""
    if not FOLDER_NAME.match(name):
        raise InputError(f"{kind} name {name!r} is not allowed; use letters, digits, '.', '_' "
                         f"and '-' (up to {NAME_CHARS} characters, starting with a letter or "
                         "digit)")
    return name


@dataclass(frozen=True)
class DataPaths:
    root: Path
    """The data dir (``data_dir`` in the config, or ``$CHATBOT_DATA_DIR``)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def logs(self) -> Path:
        """The conversation log: sessions, turns, feedback, A/B assignments and votes."""
        return self.root / "logs.sqlite"

    @property
    def index(self) -> Path:
        return self.root / "index"

    @property
    def uploads(self) -> Path:
        """Documents added from the web UI, indexed from here."""
        return self.root / "uploads"

    @property
    def transcripts(self) -> Path:
        """Transcript files added from the web UI, kept for dataset builds to read."""
        return self.root / "transcripts"

    @property
    def datasets(self) -> Path:
        return self.root / "datasets"

    @property
    def adapters(self) -> Path:
        return self.root / "adapters"

    @property
    def runs(self) -> Path:
        """Training runs in progress (checkpoints, metrics); the result goes to ``adapters``."""
        return self.root / "runs"

    @property
    def evals(self) -> Path:
        return self.root / "evals"

    @property
    def sweeps(self) -> Path:
        """Hyperparameter sweeps: the Optuna study, report and plot of each."""
        return self.root / "sweeps"

    @property
    def ab(self) -> Path:
        """A/B report charts."""
        return self.root / "ab"

    def dataset(self, name: str) -> Path:
        return self.datasets / check_name("dataset", name)

    def adapter(self, name: str) -> Path:
        return self.adapters / check_name("adapter", name)

    def run(self, name: str) -> Path:
        """The checkpoints of the run that trains adapter ``name``: named as ``--name`` is."""
        return self.runs / check_name("adapter", name)

    def eval(self, name: str) -> Path:
        return self.evals / check_name("eval", name)

    def sweep(self, name: str) -> Path:
        return self.sweeps / check_name("sweep", name)
