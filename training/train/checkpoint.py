"""Run checkpoints: everything needed to continue a run exactly where it stopped.

A checkpoint holds the trainable parameters, the optimizer and scheduler states, every RNG
state (Python, torch CPU and CUDA) and the loop state (step, best validation loss and step,
evaluations without improvement); the data order is rebuilt from (seed, epoch) and the step.
Each one is written to a temporary file and renamed, so a kill -9 mid-save leaves the previous
checkpoint intact. Disk-full and permission errors become :class:`TrainingError`. An FSDP run
(``parallel.py``) writes its weights and optimizer state sharded into ``last-STEP.dcp/`` and
the rest into ``last.pt``, which names that folder.
"""

from __future__ import annotations

import errno
import os
import random
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from training.errors import TrainingError
from training.train.model_setup import load_trainable, trainable_state

LAST = "last.pt"
BEST = "best.pt"
TRAINER_STATE = "trainer_state.json"
"""The last file TRL writes into a ``checkpoint-N`` folder: without it the save was cut short."""
NEARLY_FULL_BYTES = 64 * 2**20


@dataclass
class LoopState:
    """The loop's own counters, saved with every checkpoint."""

    step: int = 0
    best_val: float | None = None
    best_step: int | None = None
    bad_evals: int = 0
    stopped_early: bool = False
    tokens: int = 0
    history: list[dict] = field(default_factory=list)


def save_checkpoint(run_dir: Path, model, optimizer, scheduler, state: LoopState,
                    rank: int = 0) -> None:
    """Every process calls this; rank 0 writes, or with FSDP each process writes its shards
    into ``last-STEP.dcp`` first, which ``last.pt`` then names (so it is always complete)."""
    from training.train import parallel

    if parallel.is_sharded(model):
        folder = f"last-{state.step}.dcp"
        parallel.save_sharded(run_dir / folder, model, optimizer)
        if rank == 0:
            atomic_save({"sharded": folder, "scheduler": scheduler.state_dict(),
                         "rng": rng_state(), "loop": asdict(state)}, run_dir / LAST)
            parallel.keep_only(run_dir, "last-*.dcp", folder)
        return
    if rank != 0:
        return
    payload = {
        "trainable": trainable_state(model),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": rng_state(),
        "loop": asdict(state),
    }
    atomic_save(payload, run_dir / LAST)


def load_checkpoint(run_dir: Path, model, optimizer, scheduler) -> LoopState:
    check_resumable(run_dir)
    path = run_dir / LAST
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # a torn or foreign file: say which, never continue from it
        raise TrainingError(f"checkpoint {path} is unreadable ({exc}); delete {run_dir} and "
                            "start again without --resume") from None
    if "sharded" in payload:
        from training.train.parallel import load_sharded

        load_sharded(run_dir / payload["sharded"], model, optimizer)
    else:
        _load_whole(path, payload, model, optimizer)
    scheduler.load_state_dict(payload["scheduler"])
    set_rng_state(payload["rng"])
    return LoopState(**payload["loop"])


def check_resumable(run_dir: Path) -> None:
    """``--resume`` of a run with no checkpoint is refused, before its model is loaded."""
    if not (run_dir / LAST).is_file():
        raise TrainingError(f"nothing to resume: {run_dir / LAST} does not exist; start the "
                            "run without --resume")


def _load_whole(path: Path, payload: dict, model, optimizer) -> None:
    missing = set(payload["trainable"]) - {name for name, _ in model.named_parameters()}
    if missing:
        raise TrainingError(f"checkpoint {path} was made with other settings (unknown "
                            f"parameters such as {sorted(missing)[0]}); resume with the same "
                            "--method and LoRA settings, or start without --resume")
    load_trainable(model, payload["trainable"])
    optimizer.load_state_dict(payload["optimizer"])


def save_best(run_dir: Path, model, step: int, rank: int = 0) -> None:
    """Snapshot the weights of the best evaluation so far (every process calls this)."""
    from training.train import parallel

    if parallel.is_sharded(model):
        parallel.save_sharded(run_dir / f"best-{step}.dcp", model)
        if rank == 0:
            parallel.keep_only(run_dir, "best-*.dcp", f"best-{step}.dcp")
    elif rank == 0:
        atomic_save(trainable_state(model), run_dir / BEST)


def restore_best(run_dir: Path, model, step: int | None) -> None:
    """Put the snapshot of evaluation ``step`` back into the model, if there is one."""
    from training.train import parallel

    if parallel.is_sharded(model):
        folder = run_dir / f"best-{step}.dcp"
        if step is not None and (folder / ".metadata").is_file():
            parallel.load_sharded(folder, model)
        return
    path = run_dir / BEST
    if path.is_file():
        load_trainable(model, torch.load(path, map_location="cpu", weights_only=True))


def rng_state() -> dict:
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def clear_for_new_run(run_dir: Path, name: str) -> None:
    """Empty ``run_dir`` for a new run named ``name``, unless it holds an interrupted run's
    checkpoint of any method (SFT's ``last.pt``, TRL's ``checkpoint-N`` for DPO and KTO):
    that one is only ever continued or deleted by hand."""
    if not run_dir.exists():
        return
    if has_checkpoint(run_dir):
        raise TrainingError(f"an interrupted run named {name!r} exists at {run_dir}; "
                            "continue it with --resume, or delete that directory")
    shutil.rmtree(run_dir, ignore_errors=True)


def has_checkpoint(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a checkpoint of any method (SFT's ``last.pt``, TRL's
    ``checkpoint-N`` for DPO and KTO)."""
    return (run_dir / LAST).is_file() or last_trainer_checkpoint(run_dir) is not None


def forget_run(run_dir: Path) -> None:
    """Delete a run's checkpoints once its adapter is registered. A Ctrl-C now is too late to
    stop anything: the deletion finishes and the command ends as a finished run, not as an
    interrupted one told to ``--resume`` (which would find its adapter already there)."""
    try:
        shutil.rmtree(run_dir, ignore_errors=True)
    except KeyboardInterrupt:
        shutil.rmtree(run_dir, ignore_errors=True)


def last_trainer_checkpoint(run_dir: Path) -> Path | None:
    """The newest of TRL's ``checkpoint-N`` folders that was written whole: one cut short by
    a Ctrl-C during its save has no ``trainer_state.json`` (its last file) and is passed over,
    so the run resumes from the checkpoint before it."""
    complete = [folder for folder in run_dir.glob("checkpoint-*")
                if folder.name.removeprefix("checkpoint-").isdigit()
                and (folder / TRAINER_STATE).is_file()]
    return max(complete, key=lambda folder: int(folder.name.split("-")[1]), default=None)


def atomic_save(payload: object, path: Path) -> None:
    """``torch.save`` to a temporary file, then rename: never a half-written checkpoint."""
    partial = path.with_name(path.name + ".partial")
    try:
        torch.save(payload, partial)
        os.replace(partial, path)
    except (OSError, RuntimeError) as exc:
        partial.unlink(missing_ok=True)
        raise disk_error(path, exc, rerun_advice(path.parent)) from None


def rerun_advice(run_dir: Path) -> str:
    """What to run once a run's failed write can succeed: ``--resume`` only where a checkpoint
    exists to resume from (it answers "nothing to resume" otherwise)."""
    if has_checkpoint(run_dir):
        return "rerun with --resume to continue from the last checkpoint"
    return ("run the same command again (no checkpoint was saved yet, so there is nothing to "
            "resume)")


def is_write_error(exc: BaseException) -> bool:
    """An OS error, or safetensors' own error type for a full disk (the OS message inside)."""
    return isinstance(exc, OSError) or "No space left" in str(exc)


class WriteError(TrainingError):
    """A failed write, whose message ends with what to run once it is fixed; a caller further
    up that knows better gives its own (``advising``: a sweep's trial is not resumed)."""

    def __init__(self, problem: str, then: str) -> None:
        super().__init__(f"{problem}, then {then}")
        self.problem = problem

    def advising(self, then: str) -> WriteError:
        return WriteError(self.problem, then)


def disk_error(path: Path, exc: BaseException, then: str,
               room: str = "free space on that disk",
               folder: str = "the data directory") -> WriteError:
    """A clear message for a failed write: disk full, permission, or another OS error. ``then``
    says what to run once it is fixed, which only the caller knows (``rerun_advice`` for a
    training run); ``room`` and ``folder`` where to make room or grant access."""
    code = getattr(exc, "errno", None)
    if code == errno.ENOSPC or "No space left" in str(exc) or _nearly_full(path.parent):
        return WriteError(f"disk full while writing {path}; {room}", then)
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return WriteError(f"cannot write {path} (permission denied); make {folder} writable",
                          then)
    return WriteError(f"cannot write {path} ({exc}); check {folder}", then)


def _nearly_full(folder: Path) -> bool:
    """torch's own write error does not say why; a disk with almost no room left does."""
    try:
        return shutil.disk_usage(folder).free < NEARLY_FULL_BYTES
    except OSError:
        return False
