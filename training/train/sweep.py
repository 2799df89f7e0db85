"""Hyperparameter search: Optuna trials of ``finetune``, the best one registered as the adapter.

Each trial is an ordinary run (``training/train/finetune.py``) named ``NAME-trial-K``; the
validation loss at each of its evaluations is reported to Optuna, and the median pruner stops a
trial whose loss is worse than the median of earlier trials at the same step (a diverged loss
counts as pruned too). The objective is the best validation loss, or an eval metric of the
trial's adapter (``score``, higher is better; pruning then reports the negated validation loss).
The study lives in ``<data_dir>/sweeps/NAME/study.sqlite``: a rerun with the same name continues
it, retrying a trial that an interruption cut short.

    chatbot train sweep --data support-v1 --name support --trials 20
"""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator

from chatbot.paths import NAME_CHARS, DataPaths
from training.errors import DivergedError, TrainingError
from training.train.finetune import FinetuneRequest, finetune
from training.train.sweep_space import SweepSpace, suggest

VAL_LOSS = "val_loss"
TRIAL_NAME = "{name}-trial-{number}"
TRIAL_DIGITS = 4
"""Room left in a sweep's name for its trial numbers: up to 9999 trials, retried ones too."""


@dataclass(frozen=True)
class SweepRequest:
    """A sweep: the run every trial starts from (its ``name`` is the sweep's) and the search."""

    base: FinetuneRequest
    trials: int
    space: SweepSpace = field(default_factory=SweepSpace)
    objective: str = VAL_LOSS
    keep_trials: bool = False
    startup_trials: int = 2
    """Trials that finish unpruned before the median pruner starts comparing."""


@dataclass(frozen=True)
class SweepResult:
    adapter: str
    best_trial: int
    best_value: float
    best_hyperparameters: dict
    objective: str
    trials: dict[str, int]
    """How many trials ended in each state (complete, pruned, fail)."""
    report: str

    def as_dict(self) -> dict:
        from dataclasses import asdict

        return asdict(self)


def run_sweep(request: SweepRequest, score: Callable[[str, Path], float] | None = None,
              progress: bool = False) -> SweepResult:
    """Run the trials still missing from the study, then register the best trial's adapter.

    ``score(trial_name, adapter_dir)`` computes a metric objective (``chatbot train sweep
    --objective METRIC`` builds it from the eval); it is required unless the objective is
    the validation loss."""
    import optuna

    from training.data.dataset import load_training_data

    _check(request, score)
    name, paths = request.base.name, DataPaths(request.base.data_dir)
    _check_target(paths, name)
    load_training_data(paths.root, request.base.dataset)  # a bad dataset fails before the study
    sweep_dir = paths.sweep(name)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    with _alone(sweep_dir, name):
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # the report says what it did
        storage = optuna.storages.RDBStorage(f"sqlite:///{sweep_dir / 'study.sqlite'}")
        study = _open_study(request, storage)
        _retry_interrupted(study, storage, paths)
        finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
        remaining = request.trials - len(study.get_trials(deepcopy=False, states=finished))
        if remaining > 0:
            study.optimize(_objective(request, score, progress), n_trials=remaining)
        from training.train.sweep_report import write_report

        report = write_report(study, sweep_dir, request.objective)
        best = _best(study, report)
        adapter = _register_best(request, study, best, paths)
    counts: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state.name.lower()] = counts.get(trial.state.name.lower(), 0) + 1
    return SweepResult(adapter=str(adapter), best_trial=best.number, best_value=best.value,
                       best_hyperparameters=best.user_attrs["hyperparameters"],
                       objective=request.objective, trials=counts, report=str(report))


@contextlib.contextmanager
def _alone(sweep_dir: Path, name: str) -> Iterator[None]:
    """Refuse a second run of one sweep: it would take the first one's running trial for an
    interrupted one, fail it and delete its run folder."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(sweep_dir / ".lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise TrainingError(f"sweep {name!r} is running in another process (it holds "
                            f"{lock.lock_file}); wait for it to end, or give another "
                            "--name") from None
    try:
        yield
    finally:
        lock.release()


def _check(request: SweepRequest, score) -> None:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise TrainingError("chatbot train sweep runs in one process; start it without torchrun "
                            "(each trial may still use the GPU)")
    if request.trials < 1:
        raise TrainingError(f"--trials must be at least 1, got {request.trials}")
    longest = NAME_CHARS - len(TRIAL_NAME.format(name="", number=10 ** TRIAL_DIGITS - 1))
    if len(request.base.name) > longest:
        raise TrainingError(f"sweep name {request.base.name!r} leaves no room for its trials' "
                            f"names (NAME-trial-K, up to {NAME_CHARS} characters); give --name at "
                            f"most {longest} characters")
    if request.objective != VAL_LOSS and score is None:
        raise TrainingError(f"objective {request.objective!r} needs an evaluation; use "
                            f"--objective {VAL_LOSS} or an eval metric name")


def _check_target(paths: DataPaths, name: str) -> None:
    """Adapter NAME must be new, or this sweep's own best of an earlier run (a continuation)."""
    from chatbot.adapters import AdapterManifest
    from training.train.registry import check_new_adapter

    target = paths.adapter(name)
    if target.is_dir() and (target / "adapter_manifest.json").is_file():
        if AdapterManifest.from_file(target / "adapter_manifest.json").metrics.get(
                "sweep", {}).get("name") == name:
            return
    check_new_adapter(paths.root, name)


def _open_study(request: SweepRequest, storage):
    """The sweep's study, created or continued; a rerun must keep the objective it began with."""
    import optuna

    study = optuna.create_study(
        study_name=request.base.name, storage=storage, load_if_exists=True,
        direction="minimize" if request.objective == VAL_LOSS else "maximize",
        pruner=optuna.pruners.MedianPruner(n_startup_trials=request.startup_trials))
    # Seeded by the trials so far: a continued sweep does not repeat its first random draws.
    study.sampler = optuna.samplers.TPESampler(
        seed=request.base.loop.seed + len(study.get_trials(deepcopy=False)))
    started = study.user_attrs.get("objective")
    if started is None:
        study.set_user_attr("objective", request.objective)
    elif started != request.objective:
        raise TrainingError(f"sweep {request.base.name!r} was started with objective {started!r}; "
                            f"continue it with --objective {started} or choose another --name")
    return study


def _retry_interrupted(study, storage, paths: DataPaths) -> None:
    """Trials left running by a killed process: mark them failed and queue their draw again."""
    import optuna

    study_id = storage.get_study_id_from_name(study.study_name)
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        storage.set_trial_state_values(trial_id, optuna.trial.TrialState.FAIL)
        _remove_trial(paths, trial.user_attrs.get("adapter"))
        study.enqueue_trial(trial.params)


def _objective(request: SweepRequest, score, progress: bool):
    import optuna

    from training.train.checkpoint import WriteError
    from training.train.registry import SWEEP_AGAIN

    maximize = request.objective != VAL_LOSS
    paths = DataPaths(request.base.data_dir)

    def objective(trial) -> float:
        values = suggest(trial, request.space, lora=request.base.method.method == "lora")
        trial_name = TRIAL_NAME.format(name=request.base.name, number=trial.number)
        trial.set_user_attr("adapter", trial_name)
        trial.set_user_attr("hyperparameters", values)
        _remove_trial(paths, trial_name)
        scores: list[float] = []
        measure = None if score is None else (
            lambda staged: scores.append(float(score(trial_name, staged))))
        try:
            result = finetune(_trial_request(request.base, trial_name, values),
                              on_record=_reporter(trial, maximize), progress=progress,
                              before_register=measure)
        except (optuna.TrialPruned, DivergedError) as exc:
            _remove_trial(paths, trial_name)
            trial.set_user_attr("pruned_because", str(exc).split(";")[0] or "median pruner")
            raise optuna.TrialPruned(str(exc)) from None
        except KeyboardInterrupt:  # Ctrl-C: the next run tries this draw again
            _remove_trial(paths, trial_name)
            trial.study.enqueue_trial(trial.params)
            raise
        except WriteError as exc:  # a sweep has no --resume: its same command goes on
            _remove_trial(paths, trial_name)
            raise exc.advising(SWEEP_AGAIN) from None
        except BaseException:
            _remove_trial(paths, trial_name)
            raise
        trial.set_user_attr("best_step", result.best_step)
        trial.set_user_attr("steps", result.steps)
        trial.set_user_attr("best_val_loss", result.best_val_loss)
        return scores[0] if scores else result.best_val_loss

    return objective


def _reporter(trial, maximize: bool):
    """The loop's per-step callback: report each evaluation, stop the trial when pruned."""
    import optuna

    def on_record(record: dict) -> None:
        if "val_loss" in record:
            loss = record["val_loss"]
            trial.report(-loss if maximize else loss, record["step"])
            if trial.should_prune():
                raise optuna.TrialPruned(f"at step {record['step']}, val_loss {loss:g} above "
                                         "the median")

    return on_record


def _trial_request(base: FinetuneRequest, name: str, values: dict) -> FinetuneRequest:
    method_keys = {"lora_r", "lora_alpha", "lora_dropout"}
    return replace(base, name=name, resume=False,
                   method=replace(base.method, **{k: v for k, v in values.items()
                                                  if k in method_keys}),
                   loop=replace(base.loop, **{k: v for k, v in values.items()
                                              if k not in method_keys}))


def _remove_trial(paths: DataPaths, trial_name: str | None) -> None:
    """A trial's checkpoints and adapter (pruned, failed, or not the best), and the adapter
    half-written by a process killed as it registered it (never written again: a retried draw
    is a trial of its own)."""
    from training.train.registry import discard_adapter

    if trial_name:
        discard_adapter(paths.adapter(trial_name))  # never listed half-deleted
        shutil.rmtree(paths.run(trial_name), ignore_errors=True)


def _best(study, report: Path):
    import optuna

    if not study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        raise TrainingError(f"no trial of sweep {study.study_name!r} completed (see {report}); "
                            "narrow the learning-rate range or add trials, then rerun the "
                            "same command to continue")
    return study.best_trial


def _register_best(request: SweepRequest, study, best, paths: DataPaths) -> Path:
    """The best trial becomes adapter NAME; the trials' adapters go unless kept. What a
    killed registration left is put right first (the earlier best back under its name)."""
    import optuna

    from training.train.registry import promote_adapter, recover_replacement

    target = paths.adapter(request.base.name)
    recover_replacement(target)
    source = paths.adapter(best.user_attrs["adapter"])
    if source.is_dir():
        promote_adapter(source, target, {
            "name": request.base.name, "trial": best.number, "objective": request.objective,
            "value": best.value, "hyperparameters": best.user_attrs["hyperparameters"]})
    if not request.keep_trials:  # the best one too, now a copy (or what its removal left)
        for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
            _remove_trial(paths, trial.user_attrs["adapter"])
    return target
