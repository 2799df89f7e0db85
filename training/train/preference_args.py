"""TRL's settings for a preference run, from the same flags as ``chatbot train``; and the
``metrics.jsonl`` its logs become.

The optimisation flags (``--lr``, ``--batch-size``, ``--eval-every``, ``--patience``, ...) mean
what they mean for SFT: the loop settings are translated into a ``DPOConfig``/``KTOConfig``
whose Trainer checkpoints every evaluation into the run directory (``--resume`` continues from
the last one) and keeps the best evaluation's weights (early stopping on the validation loss).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Callable

from training.train.loop import LoopSettings

SCHEDULERS = {"cosine": "cosine", "linear": "linear", "constant": "constant_with_warmup"}
RENAMED = {"loss": "train_loss", "learning_rate": "lr", "eval_loss": "val_loss",
           "eval_rewards/margins": "val_reward_margin",
           "eval_rewards/accuracies": "val_reward_accuracy",
           "eval_rewards/chosen": "val_reward_chosen",
           "eval_rewards/rejected": "val_reward_rejected",
           "rewards/margins": "train_reward_margin"}
"""TRL's log keys kept in ``metrics.jsonl``, under the names SFT runs use."""


def trl_config(objective: str, loop: LoopSettings, run_dir: Path, *, beta: float,
               max_length: int, cpu: bool, bf16: bool, gradient_checkpointing: bool,
               progress: bool):
    """A ``DPOConfig`` or ``KTOConfig`` for ``objective`` with the loop's settings."""
    from trl import DPOConfig, KTOConfig

    common = dict(
        output_dir=str(run_dir), learning_rate=loop.learning_rate,
        per_device_train_batch_size=loop.batch_size, per_device_eval_batch_size=loop.batch_size,
        gradient_accumulation_steps=loop.grad_accum, num_train_epochs=loop.epochs,
        max_steps=loop.max_steps or -1, lr_scheduler_type=SCHEDULERS[loop.scheduler],
        warmup_steps=int(loop.warmup) if loop.warmup >= 1 else loop.warmup,  # < 1: a share
        weight_decay=loop.weight_decay, max_grad_norm=loop.max_grad_norm, seed=loop.seed,
        data_seed=loop.seed, eval_strategy="steps", eval_steps=loop.eval_every,
        save_strategy="steps", save_steps=loop.eval_every, save_total_limit=2,
        load_best_model_at_end=True, metric_for_best_model="eval_loss", greater_is_better=False,
        logging_steps=1, report_to="none", disable_tqdm=not progress, use_cpu=cpu, bf16=bf16,
        gradient_checkpointing=gradient_checkpointing, beta=beta, max_length=max_length,
        dataloader_num_workers=0)
    with warnings.catch_warnings():  # transformers renames the flag; its notice is not ours
        warnings.filterwarnings("ignore", "`gradient_checkpointing` is deprecated", FutureWarning)
        return (DPOConfig if objective == "dpo" else KTOConfig)(**common)


def metrics_record(log: dict, step: int) -> dict:
    """One TRL log entry as a ``metrics.jsonl`` record (the keys SFT runs use)."""
    record = {"step": step}
    if "epoch" in log:
        record["epoch"] = round(log["epoch"], 3)
    for key, name in RENAMED.items():
        if key in log:
            record[name] = round(float(log[key]), 5) if name != "lr" else log[key]
    return record


def metrics_callback(path: Path, history: list[dict],
                     on_record: Callable[[dict], bool | None] | None = None):
    """A Trainer callback that appends each log to ``path`` after rewriting ``history`` (the
    logs of a resumed run's checkpoint: records logged after it would repeat); ``on_record``
    sees each record and stops the run by returning true (the Training tab's Stop)."""
    from transformers import TrainerCallback

    class MetricsFile(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                path.write_text("".join(json.dumps(metrics_record(log, log["step"])) + "\n"
                                        for log in history), encoding="utf-8")

        def on_log(self, args, state, control, logs=None, **kwargs):
            record = metrics_record(logs or {}, state.global_step)
            if len(record) <= 2:  # the run summary (train_runtime, ...), not a step
                return
            if state.is_world_process_zero:
                with path.open("a", encoding="utf-8") as handle:
                    handle.write(json.dumps(record) + "\n")
            if on_record and on_record(record):
                control.should_training_stop = True

    return MetricsFile()


def ctrl_c_callback():
    """A Trainer callback that ends the run at its next step after a Ctrl-C that Python dropped
    (``chatbot.interrupts``)."""
    from transformers import TrainerCallback

    from chatbot.interrupts import raise_if_interrupted

    class StopOnCtrlC(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            raise_if_interrupted()

    return StopOnCtrlC()


def console_callbacks(trainer, progress: bool) -> None:
    """A progress bar on stderr (or nothing) instead of the Trainer's log dicts on stdout,
    which carries the run's JSON summary; the records are in ``metrics.jsonl``."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    class BarOnly(ProgressCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            pass

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    if progress:
        trainer.add_callback(BarOnly())


def checkpoint_history(checkpoint: str | None) -> list[dict]:
    """The logs a checkpoint's ``trainer_state.json`` carries (empty for a new run)."""
    if checkpoint is None:
        return []
    state = json.loads((Path(checkpoint) / "trainer_state.json").read_text())
    return [log for log in state.get("log_history", []) if "step" in log]
