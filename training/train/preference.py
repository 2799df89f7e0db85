"""Preference tuning: DPO on answer pairs or KTO on rated answers, into the adapter registry.

    chatbot train --method dpo --data prefs --name support-dpo --from-adapter support-lora
    chatbot train --method kto --data prefs --name support-kto          # on the base model
    chatbot train --method dpo --data prefs --name support-dpo --from-adapter support-lora --resume

The losses are TRL's (``DPOTrainer``, ``KTOTrainer``); this module wires the dataset, the model,
the run directory and the registry around them. On top of a registered SFT adapter the run loads
the base model and attaches that adapter as the trainable one, rather than merging it and adding
a new LoRA: the result is again one LoRA adapter on the same base model, so serving, ``train
merge`` and ``adapters push`` take it as they take an SFT adapter; and TRL copies a pretrained
adapter into a frozen ``ref`` adapter, so the reference policy is the SFT model itself, with one
base model in memory. From the base model a fresh LoRA (the ``--lora-*`` settings) learns and the
reference is the base (the same copy, still zero).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch

from chatbot.adapters import peft_notice_muted
from chatbot.paths import DataPaths, check_name
from training.errors import TrainingError
from training.train.checkpoint import forget_run
from training.train.finetune import FinetuneRequest
from training.train.preference_data import PreferenceRows, load_preference_rows


@dataclass(frozen=True)
class PreferenceRequest:
    run: FinetuneRequest
    """Dataset, adapter name, base model, LoRA and loop settings, device and ``resume``, as for
    SFT (``masking`` does not apply: the completion is what is scored)."""
    objective: str = "dpo"
    """``dpo`` (chosen/rejected pairs) or ``kto`` (answers labelled desirable or not)."""
    beta: float = 0.1
    """How far the policy may move from the reference: higher keeps it closer."""
    from_adapter: str | None = None
    """A registered LoRA adapter (SFT) to continue; ``None`` starts from the base model."""


@dataclass(frozen=True)
class PreferenceResult:
    """What a run produced: the registered adapter and the evaluation that chose its weights."""

    adapter: str
    objective: str
    from_adapter: str | None
    best_step: int | None
    best_val_loss: float | None
    steps: int
    stopped_early: bool
    validation: dict
    """The chosen evaluation's metrics: ``val_loss``, ``val_reward_margin`` and (DPO)
    ``val_reward_accuracy``, the share of pairs whose chosen answer gains more reward."""
    data: dict
    """Rows per split (and, for KTO, how many are desirable)."""

    def as_dict(self) -> dict:
        return asdict(self)


def train_preference(request: PreferenceRequest,
                     on_record: Callable[[dict], bool | None] | None = None,
                     progress: bool = True,
                     before_register: Callable[[Path], None] | None = None) -> PreferenceResult:
    """Train and register the adapter; ``on_record`` sees each ``metrics.jsonl`` record (true
    stops the run), ``before_register(staged_dir)`` may refuse the adapter by raising
    (``--eval-gate``). A second run of one name while the first trains is refused."""
    from training.train.run_lock import run_alone

    with run_alone(request.run.data_dir, request.run.name):
        return _train_preference(request, on_record, progress, before_register)


def _train_preference(request: PreferenceRequest,
                      on_record: Callable[[dict], bool | None] | None, progress: bool,
                      before_register: Callable[[Path], None] | None) -> PreferenceResult:
    from chatbot.models import chat_template_hash, model_fingerprint, resolve_model
    from training.data.dataset import check_built_for, check_prompt_template
    from training.train.model_setup import load_base
    from training.train.registry import check_new_adapter

    run = request.run
    if run.threads:
        torch.set_num_threads(run.threads)
    target = check_new_adapter(run.data_dir, run.name)
    rows = load_preference_rows(run.data_dir, run.dataset, request.objective)
    if run.quantize or run.distributed != "ddp":
        raise TrainingError("--quantize and --distributed fsdp apply to SFT runs; preference "
                            "tuning trains LoRA on a full-precision base (DDP under torchrun)")
    if request.objective == "kto" and run.loop.batch_size < 2:
        raise TrainingError("KTO estimates its reference point from the other answers of a "
                            "batch; use --batch-size 2 or more")
    sft = _sft_adapter(run.data_dir, request.from_adapter)
    run_dir, checkpoint = _prepare_run_dir(request, rows.manifest_sha256)
    model_dir = resolve_model(run.base_model, run.base_dir)
    model, tokenizer = load_base(model_dir, torch.float32, torch.device("cpu"), "sdpa")
    template_hash, fingerprint = chat_template_hash(tokenizer), model_fingerprint(model_dir)
    check_built_for(rows, template_hash, fingerprint)
    template, template_sha = check_prompt_template(rows)
    model = _policy(model, sft, run, template_hash, fingerprint)
    trainer = _trainer(request, rows, model, tokenizer, run_dir, checkpoint, on_record, progress)
    with peft_notice_muted():  # TRL asks the model at every step, too
        _train(trainer, checkpoint)
    result = _result(request, target, trainer, rows)
    if trainer.is_world_process_zero():
        if sft is not None and template is None:
            template, template_sha = sft[1].template, sft[1].template_hash
        _register(target, trainer.model, tokenizer, request, run_dir, result, {
            "base_model_fingerprint": fingerprint, "chat_template_hash": template_hash,
            "template": template, "template_hash": template_sha,
            "dataset": {"name": rows.name, "kind": "preference", "objective": request.objective,
                        "manifest_sha256": rows.manifest_sha256}}, before_register)
        forget_run(run_dir)  # a Ctrl-C now: too late to stop anything
    return result


def _sft_adapter(data_dir: Path, name: str | None):
    """``(directory, manifest)`` of the registered LoRA adapter to continue, or ``None``."""
    from chatbot.adapters import FULL_MODEL_METHODS, AdapterManifest, check_lora_files, \
        registered_adapters

    if name is None:
        return None
    check_name("adapter", name)
    known = registered_adapters(DataPaths(data_dir).adapters)
    if name not in known:
        listed = ", ".join(sorted(known)) or "none yet"
        raise TrainingError(f"--from-adapter {name!r} is not a registered adapter (registered: "
                            f"{listed}); train one with `chatbot train --data DATASET --name "
                            f"{name}`, or leave --from-adapter out to start from the base model")
    manifest = AdapterManifest.load(known[name])
    if manifest.method in FULL_MODEL_METHODS:
        raise TrainingError(f"adapter {name!r} is a full model (method {manifest.method}), not "
                            "a LoRA adapter; preference tuning continues LoRA adapters only")
    check_lora_files(known[name])
    return known[name], manifest


def _prepare_run_dir(request: PreferenceRequest, dataset_sha256: str
                     ) -> tuple[Path, str | None]:
    """``<data_dir>/runs/NAME`` with the Trainer's checkpoints; the one ``--resume`` continues."""
    from training.train.checkpoint import clear_for_new_run, last_trainer_checkpoint
    from training.train.finetune import DATASET_SHA, same_settings_on_resume
    from training.train.registry import probe_writable

    run = request.run
    run_dir = DataPaths(run.data_dir).run(run.name)
    found = last_trainer_checkpoint(run_dir)
    last = str(found) if found else None
    if run.resume and last is None:
        raise TrainingError(f"nothing to resume: {run_dir} holds no checkpoint; start the run "
                            "without --resume")
    if not run.resume:
        clear_for_new_run(run_dir, run.name)
    probe_writable(run_dir)
    same_settings_on_resume(run_dir, {**_hyperparameters(request), DATASET_SHA: dataset_sha256},
                            run.resume)
    return run_dir, last


def _hyperparameters(request: PreferenceRequest) -> dict:
    run = request.run
    return {"objective": request.objective, "beta": request.beta,
            "from_adapter": request.from_adapter, "dataset": run.dataset,
            "base_model": run.base_model, **asdict(run.method), **asdict(run.loop),
            "max_seq_len": run.max_seq_len, "dtype": run.dtype,
            "gradient_checkpointing": run.gradient_checkpointing}


def _policy(model, sft, run: FinetuneRequest, template_hash: str, fingerprint: str):
    """The model TRL trains: the SFT adapter made trainable, or a fresh LoRA on the base."""
    from peft import PeftModel

    from training.train.model_setup import MethodSettings, apply_method

    torch.manual_seed(run.loop.seed)  # a fresh LoRA's initial weights depend on it
    if sft is None:
        return apply_method(model, MethodSettings(**{**asdict(run.method), "method": "lora"}))
    folder, manifest = sft
    manifest.check_serves_on(folder, run.base_model, fingerprint, template_hash,
                             "continue it under a config whose models.chat is its base model, "
                             "or leave --from-adapter out")
    with peft_notice_muted():
        return PeftModel.from_pretrained(model, str(folder), is_trainable=True)


def _trainer(request: PreferenceRequest, rows: PreferenceRows, model, tokenizer, run_dir: Path,
             checkpoint: str | None, on_record, progress: bool):
    from datasets import Dataset
    from transformers import EarlyStoppingCallback
    from trl import DPOTrainer, KTOTrainer

    from training.train.preference_args import (checkpoint_history, console_callbacks,
                                                 ctrl_c_callback, metrics_callback, trl_config)

    run = request.run
    cuda = run.device == "cuda" or (run.device == "auto" and torch.cuda.is_available())
    if run.device == "cuda" and not torch.cuda.is_available():
        raise TrainingError("device cuda was asked for but no CUDA GPU is visible; use "
                            "--device cpu or set training.device: auto")
    bf16 = run.dtype == "bfloat16" or (run.dtype == "auto" and cuda)
    if not progress:
        _quiet_library_output()
    config = trl_config(request.objective, run.loop, run_dir, beta=request.beta,
                        max_length=run.max_seq_len, cpu=not cuda, bf16=bf16,
                        gradient_checkpointing=run.gradient_checkpointing, progress=progress)
    callbacks = [metrics_callback(run_dir / "metrics.jsonl", checkpoint_history(checkpoint),
                                  on_record), ctrl_c_callback()]
    if run.loop.patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=run.loop.patience))
    trainer_class = DPOTrainer if request.objective == "dpo" else KTOTrainer
    trainer = trainer_class(model=model, args=config, processing_class=tokenizer,
                            train_dataset=Dataset.from_list(rows.train),
                            eval_dataset=Dataset.from_list(rows.validation), callbacks=callbacks)
    _check_rows_fit(request, {"training": trainer.train_dataset,
                              "validation": trainer.eval_dataset})
    console_callbacks(trainer, progress)
    return trainer


def _quiet_library_output() -> None:
    """``--quiet``: TRL tokenizes through datasets' map, which draws bars of its own, and
    advises on KTO's loss weights (settings ``chatbot train`` does not take) through its logger
    when the labels are unbalanced; the summary says how many rows are desirable."""
    import logging

    from datasets import disable_progress_bars

    disable_progress_bars()
    logging.getLogger("trl").setLevel(logging.ERROR)


def _check_rows_fit(request: PreferenceRequest, tokenized: dict) -> None:
    """TRL drops the rows whose prompt alone fills ``max_length`` (no answer token would be
    left to score); a split left empty would train and then fail at its first evaluation, or
    train on nothing, so it is refused before the first step with the flag that fixes it."""
    rows = "pair" if request.objective == "dpo" else "row"
    for split, dataset in tokenized.items():
        if len(dataset) == 0:
            raise TrainingError(
                f"every {split} {rows}'s prompt fills --max-seq-len {request.run.max_seq_len} "
                f"tokens (training.max_seq_len), leaving no room for its answer; raise "
                f"--max-seq-len above the prompts' length (the passages and history of a RAG "
                f"prompt often take 800 tokens or more)")


def _train(trainer, checkpoint: str | None) -> None:
    """``trainer.train``, resumed from ``checkpoint`` where there is one, but not past the end
    of the run. The Trainer takes a step before it checks ``max_steps`` or early stopping, so
    resumed from a final checkpoint (a run interrupted while its adapter was evaluated or
    registered) it would train on: one step more wherever the budget ends inside an epoch, an
    evaluation interval more after early stopping. Such a run has nothing left to train: it
    takes the checkpoint's state and its best evaluation's weights, as the end of training does
    (``metrics.jsonl`` already holds every record: none is logged after it)."""
    from transformers import TrainerState

    if checkpoint is not None:
        state = TrainerState.load_from_json(str(Path(checkpoint) / "trainer_state.json"))
        control = state.stateful_callbacks.get("TrainerControl", {}).get("args", {})
        if state.global_step >= state.max_steps or control.get("should_training_stop"):
            trainer.state = state
            trainer.model.load_adapter(state.best_model_checkpoint or checkpoint, "default")
            return
    trainer.train(resume_from_checkpoint=checkpoint)


def _result(request: PreferenceRequest, target: Path, trainer, rows: PreferenceRows
            ) -> PreferenceResult:
    from training.train.preference_args import metrics_record

    state = trainer.state
    best = state.best_model_checkpoint
    best_step = int(best.rsplit("-", 1)[1]) if best else None
    evals = [metrics_record(log, log["step"]) for log in state.log_history
             if "eval_loss" in log and log["step"] == best_step]
    return PreferenceResult(
        adapter=str(target), objective=request.objective, from_adapter=request.from_adapter,
        best_step=best_step, best_val_loss=state.best_metric, steps=state.global_step,
        stopped_early=state.global_step < state.max_steps,
        validation=evals[-1] if evals else {}, data=rows.counts())


def _register(target: Path, model, tokenizer, request: PreferenceRequest, run_dir: Path,
              result: PreferenceResult, provenance: dict,
              check: Callable[[Path], None] | None) -> None:
    from training.train.registry import build_manifest, publish

    manifest = build_manifest(
        name=request.run.name, method=request.objective, base_model=request.run.base_model,
        **provenance, hyperparameters=_hyperparameters(request), best_step=result.best_step,
        metrics={"best_val_loss": result.best_val_loss, "validation": result.validation,
                 "steps": result.steps, "stopped_early": result.stopped_early,
                 "data": result.data})

    def save_weights(folder: Path) -> None:
        model.save_pretrained(folder, selected_adapters=["default"])  # not TRL's "ref" copy
        tokenizer.save_pretrained(folder)

    publish(target, save_weights, manifest, run_dir / "metrics.jsonl", check)
