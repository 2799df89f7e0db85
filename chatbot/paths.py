"""Where a bot keeps its state: every file and folder under its data dir, named in one place.

    paths = DataPaths(config.data_path)
    paths.logs                                # <data_dir>/logs.sqlite
    paths.adapter("v2")                       # <data_dir>/adapters/v2
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


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
        return self.datasets / name

    def adapter(self, name: str) -> Path:
        return self.adapters / name

    def run(self, name: str) -> Path:
        return self.runs / name

    def eval(self, name: str) -> Path:
        return self.evals / name

    def sweep(self, name: str) -> Path:
        return self.sweeps / name
