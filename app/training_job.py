"""One fine-tuning run in a child process, started and watched by the web UI's Training tab.

The run is ``python -m app train --data D --name N ... --config PATH --quiet``: a child
process, so the server stays responsive while it trains and a crash in training cannot take the
server down. Its progress is read from the files the run writes (``metrics.jsonl``), never from
its output; stopping it interrupts it like Ctrl-C, and its last checkpoint lets
``chatbot train --data D --name N --resume`` (or the tab's Resume box) continue it.

    chatbot serve        # then open the Training tab
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from chatbot.adapters import ADAPTER_MANIFEST
from chatbot.errors import InputError
from chatbot.paths import DataPaths
from training.train.registry import check_new_adapter

CHECKPOINT = "last.pt"
"""The run's last checkpoint, which ``--resume`` continues from (training.train.checkpoint)."""
STOP_GRACE_S = 15.0
"""How long an interrupted run may take to exit before it is killed."""


@dataclass(frozen=True)
class RunRequest:
    """What the tab asks for; ``None`` keeps the config's ``training:`` value."""

    dataset: str
    name: str
    method: str | None = None
    epochs: float | None = None
    learning_rate: float | None = None
    batch_size: int | None = None
    max_steps: int | None = None
    lora_r: int | None = None
    eval_every: int | None = None
    resume: bool = False

    def arguments(self) -> list[str]:
        """The ``chatbot train`` flags of this request."""
        flags = ["--data", self.dataset, "--name", self.name]
        for flag, value in (("--method", self.method), ("--epochs", self.epochs),
                            ("--lr", self.learning_rate), ("--batch-size", self.batch_size),
                            ("--max-steps", self.max_steps), ("--lora-r", self.lora_r),
                            ("--eval-every", self.eval_every)):
            if value is not None:
                flags += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
        return flags + (["--resume"] if self.resume else [])


@dataclass(frozen=True)
class RunStatus:
    """Where the current (or last) run stands."""

    name: str | None
    state: str
    """``idle`` (none started), ``running``, ``finished``, ``failed`` or ``stopped``."""
    message: str
    adapter: Path | None = None
    """The registered adapter directory once ``finished``."""


class TrainingJob:
    """At most one ``chatbot train`` child at a time, for one bot's config and data dir."""

    def __init__(self, config_path: Path, data_dir: Path, python: str = sys.executable) -> None:
        self.config_path = Path(config_path)
        self.data_dir = Path(data_dir)
        self.paths = DataPaths(self.data_dir)
        """A run in progress is in ``run(NAME)`` (metrics.jsonl, last.pt), its registered result
        in ``adapter(NAME)``: see training.train.finetune and training.train.registry."""
        self.python = python
        self.request: RunRequest | None = None
        self.log_path: Path | None = None
        self._process: subprocess.Popen | None = None
        self._stopped = False
        self._lock = threading.Lock()

    def command(self, request: RunRequest) -> list[str]:
        return [self.python, "-m", "app", "train", *request.arguments(),
                "--config", str(self.config_path), "--quiet"]

    def start(self, request: RunRequest) -> subprocess.Popen:
        """Start the run; refused while another one is running."""
        with self._lock:
            if self.running():
                raise InputError(f"run {self.request.name!r} is still training; wait for it "
                                 "to finish or stop it before starting another")
            check_new_adapter(self.data_dir, request.name)  # before its log file is named
            if request.resume and not (self.paths.run(request.name) / CHECKPOINT).is_file():
                raise InputError(f"run {request.name!r} has no checkpoint to resume from (one "
                                 "is saved at each validation); untick Resume to train it "
                                 "from the beginning")
            runs = self.paths.runs
            runs.mkdir(parents=True, exist_ok=True)
            self.log_path = runs / f"{request.name}.log"  # beside the run dir, which is replaced
            env = child_environment(self.data_dir)
            with self.log_path.open("wb") as log:
                self._process = subprocess.Popen(self.command(request), stdout=log,
                                                 stderr=subprocess.STDOUT,
                                                 stdin=subprocess.DEVNULL, env=env)
            self.request, self._stopped = request, False
            return self._process

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self, grace_s: float = STOP_GRACE_S) -> bool:
        """Interrupt the run like Ctrl-C (killed if it has not exited after ``grace_s``);
        False when nothing was running."""
        with self._lock:
            if not self.running():
                return False
            self._stopped = True
            self._process.send_signal(signal.SIGINT)
            try:
                self._process.wait(grace_s)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            return True

    def status(self) -> RunStatus:
        if self.request is None or self._process is None:
            return RunStatus(None, "idle", "No run started from this page yet.")
        name, code = self.request.name, self._process.poll()
        adapter = self.paths.adapter(name)
        if code is None:
            return RunStatus(name, "running", f"Training {name!r} on dataset "
                             f"{self.request.dataset!r} (pid {self._process.pid}).")
        if self._stopped:
            return RunStatus(name, "stopped", self._stopped_message())
        if code == 0 and (adapter / ADAPTER_MANIFEST).is_file():
            return RunStatus(name, "finished", f"Run {name!r} finished: adapter registered "
                             f"at {adapter}.", adapter)
        return RunStatus(name, "failed", f"Run {name!r} failed (exit code {code}): "
                         f"{self.failure()}")

    def _stopped_message(self) -> str:
        name, dataset = self.request.name, self.request.dataset
        if (self.paths.run(name) / CHECKPOINT).is_file():
            return (f"Run {name!r} was stopped; its last checkpoint is kept: tick Resume and "
                    f"start it again (or run `chatbot train --data {dataset} --name {name} "
                    "--resume`) to continue from there.")
        return (f"Run {name!r} was stopped before its first checkpoint (saved at each "
                "validation); start it again to train from the beginning.")

    def failure(self) -> str:
        """The run's one-line ``error:`` message (or the ``Error:`` line of a flag the command
        refused, without its usage text), else the end of its output."""
        text = self.log_path.read_text(encoding="utf-8", errors="replace") if (
            self.log_path and self.log_path.is_file()) else ""
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        errors = [line for line in lines if line.lower().startswith("error:")]
        if errors:
            return errors[-1][len("error:"):].strip()
        return " / ".join(lines[-3:]) or "no output; see the server's log"

    def metrics(self) -> list[dict]:
        """The records of the current run's ``metrics.jsonl``: the run directory's while it
        trains (or after a stop), the registered adapter's once it has finished."""
        if self.request is None:
            return []
        name = self.request.name
        for path in (self.paths.run(name) / "metrics.jsonl",
                     self.paths.adapter(name) / "metrics.jsonl"):
            if path.is_file():
                return read_metrics(path)
        return []


def child_environment(data_dir: Path) -> dict[str, str]:
    """The server's environment, its data dir, and its own code first on the import path (the
    child runs the same ``chatbot`` as the server, installed or not)."""
    code_root = str(Path(__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (code_root, os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "CHATBOT_DATA_DIR": str(data_dir), "PYTHONPATH": path}


def read_metrics(path: Path) -> list[dict]:
    """JSON lines of a file another process is appending to (a torn last line is skipped)."""
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records
