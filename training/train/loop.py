"""The optimisation loop: packed micro-batches, gradient accumulation, validation, early stopping.

One loop for one process or many (DDP or FSDP under ``torchrun``, ``parallel.py``: ranks take
turns over the same data order, gradients are averaged, rank 0 writes). Validation loss and
perplexity are computed every ``eval_every`` steps and at the end; the best weights are
snapshotted whenever validation improves, and the run stops after ``patience`` evaluations
without improvement. A checkpoint is written at each evaluation, so ``--resume`` continues
with the same data order and schedule.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.distributed as dist

from chatbot.interrupts import raise_if_interrupted
from training.train.batches import eval_batches, micro_batches, pack, steps_per_epoch
from training.train.checkpoint import (LoopState, load_checkpoint, save_best, save_checkpoint)
from training.errors import DivergedError, TrainingError
from training.train.tokenize import RenderedExample

SCHEDULERS = ("cosine", "linear", "constant")


@dataclass(frozen=True)
class LoopSettings:
    epochs: float = 3.0
    max_steps: int | None = None
    learning_rate: float = 2e-4
    batch_size: int = 4
    grad_accum: int = 1
    warmup: float = 0.05
    scheduler: str = "cosine"
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    seed: int = 42
    eval_every: int = 50
    patience: int | None = 3
    eval_token_budget: int = 8192
    bf16: bool = False


@dataclass(frozen=True)
class Workers:
    """Where the loop runs: device, DDP rank and world size."""

    device: torch.device
    rank: int = 0
    world: int = 1
    owns_group: bool = False
    """The run started the process group (and ends it); false when its caller did."""


def total_steps(settings: LoopSettings, examples: int, world: int) -> int:
    per_epoch = steps_per_epoch(examples, settings.batch_size, settings.grad_accum, world)
    if settings.max_steps:
        return settings.max_steps
    return max(1, math.ceil(settings.epochs * per_epoch))


def schedule(settings: LoopSettings, steps: int) -> Callable[[int], float]:
    """Learning-rate multiplier: linear warm-up, then cosine, linear or constant."""
    if settings.scheduler not in SCHEDULERS:
        raise TrainingError(f"unknown scheduler {settings.scheduler!r}; use one of "
                            f"{', '.join(SCHEDULERS)}")
    warm = int(settings.warmup) if settings.warmup >= 1 else int(settings.warmup * steps)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / (warm + 1)
        progress = (step - warm) / max(1, steps - warm)
        if settings.scheduler == "cosine":
            return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        if settings.scheduler == "linear":
            return max(0.0, 1 - progress)
        return 1.0

    return factor


def train_loop(loss_module, model, train: Sequence[RenderedExample],
               val: Sequence[RenderedExample], settings: LoopSettings, run_dir: Path,
               workers: Workers, resume: bool = False,
               on_record: Callable[[dict], bool | None] | None = None,
               progress: bool = True) -> LoopState:
    """Train until the step budget or early stopping; returns the final loop state."""
    steps = total_steps(settings, len(train), workers.world)
    params = [param for param in model.parameters() if param.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=settings.learning_rate,
                                  weight_decay=settings.weight_decay,
                                  fused=workers.device.type == "cuda")
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule(settings, steps))
    metrics = MetricsFile(run_dir / "metrics.jsonl", enabled=workers.rank == 0)
    if resume:
        state = load_checkpoint(run_dir, model, optimizer, scheduler)
        metrics.rewrite(state.history)
    else:
        state = LoopState()
        torch.manual_seed(settings.seed)
        baseline = evaluate(loss_module, val, settings, workers)
        state.history.append(metrics.write({"step": 0, **baseline}))
    started, start_tokens = time.perf_counter(), state.tokens
    # closed on a Ctrl-C too: the error that follows starts a line of its own
    with _progress_bar(steps, state.step, enabled=progress and workers.rank == 0) as bar:
        while state.step < steps and not state.stopped_early:
            raise_if_interrupted()
            record = _train_step(loss_module, train, settings, workers, optimizer, scheduler,
                                 state, steps)
            elapsed = time.perf_counter() - started
            record["elapsed_s"] = round(elapsed, 3)
            record["tokens_per_s"] = round((state.tokens - start_tokens) * workers.world
                                           / elapsed, 1)
            if state.step % settings.eval_every == 0 or state.step == steps:
                record.update(evaluate(loss_module, val, settings, workers))
                _early_stopping(record, state, settings, model, run_dir, workers)
            state.history.append(metrics.write(record))
            if "val_loss" in record:
                save_checkpoint(run_dir, model, optimizer, scheduler, state, workers.rank)
            bar.update(1)
            bar.set_postfix({k: record[k] for k in ("train_loss", "val_loss") if k in record})
            if on_record and on_record(record):
                break
    return state


def _train_step(loss_module, train, settings, workers, optimizer, scheduler, state, steps):
    per_epoch = steps_per_epoch(len(train), settings.batch_size, settings.grad_accum,
                                workers.world)
    epoch, within = divmod(state.step, per_epoch)
    batches = micro_batches(len(train), settings.batch_size, settings.seed, epoch,
                            workers.rank, workers.world)
    chosen = batches[within * settings.grad_accum:(within + 1) * settings.grad_accum]
    packed = [pack([train[index] for index in indices]) for indices in chosen]
    supervised = sum(batch.supervised for batch in packed)
    loss_sum, tokens = torch.zeros((), device=workers.device), 0
    for position, batch in enumerate(packed):
        sync = position == len(packed) - 1
        with _no_sync(loss_module, sync), _autocast(settings, workers):
            loss = loss_module(batch.to(workers.device))
        (loss / supervised).backward()
        loss_sum += loss.detach()
        tokens += batch.tokens
    loss_value = loss_sum.item()  # one device sync per step
    if not math.isfinite(loss_value):
        raise DivergedError(f"the loss became {loss_value} at step {state.step + 1}; lower --lr "
                            f"(now {settings.learning_rate:g}) or check the dataset for broken "
                            "examples; nothing was registered")
    torch.nn.utils.clip_grad_norm_([p for p in loss_module.parameters() if p.requires_grad],
                                   settings.max_grad_norm)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    state.step += 1
    state.tokens += tokens
    return {"step": state.step, "epoch": round(state.step / per_epoch, 3),
            "train_loss": round(loss_value / supervised, 5),
            "lr": scheduler.get_last_lr()[0], "tokens": state.tokens * workers.world}


@torch.no_grad()
def evaluate(loss_module, val, settings: LoopSettings, workers: Workers) -> dict:
    """Mean validation loss per supervised token, and its perplexity."""
    loss_module.eval()
    total = torch.zeros(2, dtype=torch.float64, device=workers.device)
    for batch in eval_batches(val, settings.eval_token_budget, workers.rank, workers.world):
        with _autocast(settings, workers):
            total[0] += loss_module(batch.to(workers.device)).double()
        total[1] += batch.supervised
    if workers.world > 1:
        dist.all_reduce(total)
    loss_module.train()
    loss = (total[0] / total[1].clamp(min=1)).item()
    return {"val_loss": round(loss, 5), "val_ppl": round(math.exp(min(loss, 50.0)), 3)}


def _early_stopping(record, state: LoopState, settings, model, run_dir, workers) -> None:
    if state.best_val is None or record["val_loss"] < state.best_val:
        state.best_val, state.best_step, state.bad_evals = record["val_loss"], state.step, 0
        save_best(run_dir, model, state.step, workers.rank)
        return
    state.bad_evals += 1
    if settings.patience and state.bad_evals >= settings.patience:
        state.stopped_early = True
        record["early_stop"] = True


def _no_sync(module, sync: bool):
    """Gradients are averaged across processes once per step, not per micro-batch."""
    if sync:
        return contextlib.nullcontext()
    if hasattr(module, "set_requires_gradient_sync"):  # FSDP2
        return _fsdp_no_sync(module)
    return module.no_sync() if hasattr(module, "no_sync") else contextlib.nullcontext()


@contextlib.contextmanager
def _fsdp_no_sync(module):
    module.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        module.set_requires_gradient_sync(True)


def _autocast(settings: LoopSettings, workers: Workers):
    if not settings.bf16:
        return contextlib.nullcontext()
    return torch.autocast(workers.device.type, dtype=torch.bfloat16)


def _progress_bar(total: int, initial: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, desc="training",
                unit="step", dynamic_ncols=True)


class MetricsFile:
    """``metrics.jsonl``: one JSON record per step (and the step-0 baseline)."""

    def __init__(self, path: Path, enabled: bool) -> None:
        self.path, self.enabled = path, enabled

    def write(self, record: dict) -> dict:
        if self.enabled:
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")
        return record

    def rewrite(self, records: list[dict]) -> None:
        if self.enabled:
            self.path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
