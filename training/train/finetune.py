"""Fine-tune a variant: dataset in, registered adapter out.

``finetune(request)`` loads the dataset and the base model, checks they belong together,
renders the examples with the serving chat template, trains (``training/train/loop.py``), restores the
best validation weights and registers ``<data_dir>/adapters/NAME`` atomically
(``training/train/registry.py``). Under ``torchrun`` every rank runs this unchanged (DDP).

    chatbot train --data NAME --name ADAPTER [--method lora|freeze|full]
    torchrun --nproc-per-node 2 -m app train --data NAME --name ADAPTER
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import torch

from chatbot.paths import DataPaths

from training.errors import TrainingError
from training.train.checkpoint import forget_run
from training.train.loop import LoopSettings, Workers, train_loop
from training.train.model_setup import MethodSettings

SETTINGS = "settings.json"
"""In a run directory: the settings the run started with, which ``--resume`` keeps."""


@dataclass(frozen=True)
class FinetuneRequest:
    """Everything a run needs, as flat values (the CLI builds it from the config and flags)."""

    data_dir: Path
    dataset: str
    name: str
    base_model: str
    base_dir: Path | None = None
    method: MethodSettings = field(default_factory=MethodSettings)
    loop: LoopSettings = field(default_factory=LoopSettings)
    max_seq_len: int = 1024
    masking: str = "all_assistant"
    device: str = "auto"
    dtype: str = "auto"
    gradient_checkpointing: bool = False
    quantize: str | None = None
    """``4bit``: the frozen base in NF4 on CUDA, LoRA on top (QLoRA, ``quantize.py``)."""
    distributed: str = "ddp"
    """Under ``torchrun``: ``ddp`` (a full copy per GPU) or ``fsdp`` (sharded, ``parallel.py``)."""
    compile: str = "auto"
    """``torch.compile`` each decoder layer: ``auto`` (CUDA only), ``on`` or ``off``."""
    resume: bool = False
    threads: int | None = None


@dataclass(frozen=True)
class FinetuneResult:
    """What a run produced: the registered adapter and the losses that chose its weights."""

    adapter: str
    best_step: int | None
    best_val_loss: float | None
    steps: int
    stopped_early: bool
    val_loss_before: float | None
    """Validation loss of the base model, before the first step."""
    data: dict[str, dict]
    """``train`` and ``validation``: what rendering kept, cut and dropped
    (``training.train.tokenize.render_all``)."""

    def as_dict(self) -> dict:
        """The result as ``chatbot train`` prints it."""
        return asdict(self)


def finetune(request: FinetuneRequest, on_record: Callable[[dict], bool | None] | None = None,
             progress: bool = True, before_register: Callable[[Path], None] | None = None
             ) -> FinetuneResult:
    """Train and register the adapter; returns where it is, its best step and losses.

    ``before_register(staged_dir)`` may refuse the adapter by raising (``--eval-gate``). A
    second run of one name while the first trains is refused (``run_lock.py``)."""
    from training.train.run_lock import run_alone

    with run_alone(request.data_dir, request.name):
        return _finetune(request, on_record, progress, before_register)


def _finetune(request: FinetuneRequest, on_record: Callable[[dict], bool | None] | None,
              progress: bool, before_register: Callable[[Path], None] | None
              ) -> FinetuneResult:
    from chatbot.models import chat_template_hash, model_fingerprint, resolve_model
    from training.data.dataset import check_built_for, check_prompt_template, load_training_data
    from training.train.registry import check_new_adapter, probe_writable
    from training.train.tokenize import render_all

    from training.train.quantize import check_quantization

    check_quantization(request.quantize, request.method.method, request.device,
                       request.distributed)
    workers = _start_workers(request.device)
    if request.threads:
        torch.set_num_threads(request.threads)
    target = check_new_adapter(request.data_dir, request.name)
    data = load_training_data(request.data_dir, request.dataset)  # before writing the run dir
    run_dir = _prepared_run_dir(request, workers, probe_writable, data.manifest_sha256)
    model_dir = resolve_model(request.base_model, request.base_dir)
    model, tokenizer, bf16, attention_kwargs = _load_model(model_dir, request, workers)
    template_hash, fingerprint = chat_template_hash(tokenizer), model_fingerprint(model_dir)
    check_built_for(data, template_hash, fingerprint)
    template, template_sha = check_prompt_template(data)
    train, train_report = render_all(data.train, tokenizer, request.masking,
                                     request.max_seq_len, f"dataset {data.name!r} (train)")
    val, val_report = render_all(data.validation, tokenizer, request.masking,
                                 request.max_seq_len, f"dataset {data.name!r} (validation)")
    loop_settings = LoopSettings(**{**asdict(request.loop), "bf16": bf16})
    request = replace(request, loop=loop_settings)  # the manifest records the resolved bf16
    model, loss_module = _trainable(model, request, workers, attention_kwargs)
    state = train_loop(loss_module, model, train, val, loop_settings, run_dir, workers,
                       resume=request.resume, on_record=on_record, progress=progress)
    _restore_best(model, run_dir, state.best_step)
    weights = _gathered(model, request)
    result = FinetuneResult(adapter=str(target), best_step=state.best_step,
                            best_val_loss=state.best_val, steps=state.step,
                            stopped_early=state.stopped_early,
                            val_loss_before=state.history[0].get("val_loss"),
                            data={"train": train_report, "validation": val_report})
    if workers.rank == 0:
        _register(target, model, tokenizer, request, run_dir, result, {
            "base_model_fingerprint": fingerprint, "chat_template_hash": template_hash,
            "template": template, "template_hash": template_sha,
            "dataset": {"name": data.name, "manifest_sha256": data.manifest_sha256,
                        "examples_sha256": data.manifest.sha256}}, before_register, weights)
        forget_run(run_dir)  # a Ctrl-C now: too late to stop anything
    _stop_workers(workers)
    return result


def _start_workers(device: str) -> Workers:
    """One process, or a DDP rank when started by ``torchrun`` (``WORLD_SIZE`` > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if use_cuda and not torch.cuda.is_available():
        raise TrainingError("device cuda was asked for but no CUDA GPU is visible; use "
                            "--device cpu or set training.device: auto")
    target = torch.device(f"cuda:{local}") if use_cuda else torch.device(
        "cpu" if device == "auto" else device)
    if use_cuda:
        torch.cuda.set_device(target)
    owns = world > 1 and not torch.distributed.is_initialized()
    if owns:
        torch.distributed.init_process_group("nccl" if use_cuda else "gloo")
    return Workers(device=target, rank=rank, world=world, owns_group=owns)


def _stop_workers(workers: Workers) -> None:
    if workers.world > 1 and torch.distributed.is_initialized():
        torch.distributed.barrier()
        if workers.owns_group:
            torch.distributed.destroy_process_group()


def _prepared_run_dir(request: FinetuneRequest, workers: Workers, probe_writable,
                      dataset_sha256: str) -> Path:
    """Rank 0 prepares the run directory while the other processes wait: several processes
    clearing one folder and writing its settings would race."""
    if workers.rank == 0:
        _same_settings_on_resume(_prepare_run_dir(request, probe_writable), request,
                                 dataset_sha256)
    if workers.world > 1:
        torch.distributed.barrier()
    return DataPaths(request.data_dir).run(request.name)


def _prepare_run_dir(request: FinetuneRequest, probe_writable) -> Path:
    """``<data_dir>/runs/NAME``: checkpoints of a run in progress (resume reads them)."""
    from training.train.checkpoint import check_resumable, clear_for_new_run

    run_dir = DataPaths(request.data_dir).run(request.name)
    if request.resume:
        check_resumable(run_dir)
    else:
        clear_for_new_run(run_dir, request.name)
    probe_writable(run_dir)
    return run_dir


def _same_settings_on_resume(run_dir: Path, request: FinetuneRequest,
                             dataset_sha256: str) -> None:
    same_settings_on_resume(run_dir, {**_hyperparameters(request), "dataset": request.dataset,
                                      "base_model": request.base_model,
                                      DATASET_SHA: dataset_sha256}, request.resume)


def same_settings_on_resume(run_dir: Path, settings: dict, resume: bool) -> None:
    """A resumed run must use the settings it started with, or it would not continue the same
    run: a new run records ``settings`` in the run directory, a resumed one compares them."""
    import json

    from index import jsonfile

    settings = json.loads(json.dumps(settings))
    if not resume:
        jsonfile.write_atomic(run_dir / SETTINGS, settings)
        return
    started = started_settings(run_dir)
    if not started:  # the callers found a checkpoint (check_resumable): its record is gone
        raise TrainingError(f"{run_dir} holds a checkpoint but not the settings the run started "
                            f"with ({run_dir / SETTINGS}), so --resume cannot continue it as it "
                            f"began; delete {run_dir} and start again without --resume")
    same_dataset = started.get("dataset", settings.get("dataset")) == settings.get("dataset")
    if same_dataset and started.get(DATASET_SHA, settings[DATASET_SHA]) != settings[DATASET_SHA]:
        raise TrainingError(f"dataset {settings['dataset']!r} was built again since the run "
                            "started, and a resumed run must go on with the examples it began "
                            "with; start a new run under another --name")
    changed = sorted(key for key in settings.keys() | started.keys()  # the hash: said above
                     if key != DATASET_SHA and settings.get(key) != started.get(key))
    if changed:
        raise TrainingError(
            "--resume needs the settings the run started with; changed: " + ", ".join(
                f"{key} ({started.get(key)!r} -> {settings.get(key)!r})" for key in changed)
            + "; leave those flags out to keep the run's own settings, or start a new run "
            "under another --name")


DATASET_SHA = "dataset_manifest_sha256"
"""Recorded with a run's settings: which build of its dataset it trains on."""


def started_settings(run_dir: Path) -> dict:
    """The settings a run recorded when it started (``{}`` when there is no record)."""
    from index import jsonfile

    path = run_dir / SETTINGS
    if not path.is_file():
        return {}
    return jsonfile.read(path, TrainingError,
                         f"delete {run_dir} and start again without --resume")


def _hyperparameters(request: FinetuneRequest) -> dict:
    return {**asdict(request.method), **asdict(request.loop), "max_seq_len": request.max_seq_len,
            "masking": request.masking, "dtype": request.dtype,
            "gradient_checkpointing": request.gradient_checkpointing,
            "quantize": request.quantize, "distributed": request.distributed}


def _load_model(model_dir: str, request: FinetuneRequest, workers: Workers):
    """Base model in the run's dtype; bf16 autocast on GPUs, float32 on CPUs by default."""
    from training.train import attention
    from training.train.model_setup import load_base

    cuda = workers.device.type == "cuda"
    bf16 = request.dtype == "bfloat16" or (request.dtype == "auto" and cuda)
    # LoRA keeps the frozen base in bf16 (half the memory); full/freeze keep fp32 master weights.
    weights = torch.bfloat16 if bf16 and cuda and request.method.method == "lora" else torch.float32
    varlen = cuda and attention.varlen_available()
    name = attention.register() if varlen else "sdpa"
    # FSDP loads on the CPU: each layer reaches the GPU already sharded (parallel.py).
    sharded = request.distributed == "fsdp" and workers.world > 1
    model, tokenizer = load_base(model_dir, weights, torch.device("cpu") if sharded
                                 else workers.device, name, quantize=request.quantize)
    if request.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model, tokenizer, bf16, varlen


def _trainable(model, request: FinetuneRequest, workers: Workers, attention_kwargs: bool):
    from training.train.compiled import compile_layers, wants_compile
    from training.train.model_setup import SupervisedLoss, apply_method
    from training.train.parallel import parallel

    torch.manual_seed(request.loop.seed)  # LoRA's initial weights depend on it
    model = apply_method(model, request.method)
    if wants_compile(request.compile, workers.device):
        compile_layers(model)
    # The model is already where it trains (or on the CPU until FSDP shards it).
    loss_module = SupervisedLoss(model, attention_kwargs=attention_kwargs)
    return model, parallel(loss_module, model, request.distributed, workers.device,
                           workers.world, request.loop.bf16)


def _restore_best(model, run_dir: Path, best_step: int | None) -> None:
    """Early stopping keeps the best evaluation's weights, not the last step's."""
    from training.train.checkpoint import restore_best

    if run_dir.exists():
        restore_best(run_dir, model, best_step)


def _gathered(model, request: FinetuneRequest) -> dict | None:
    """With FSDP, the weights to save gathered into full tensors (every rank takes part)."""
    from training.train.parallel import full_state, is_sharded

    if not is_sharded(model):
        return None
    return full_state(model, trainable_only=request.method.method == "lora")


def _register(target: Path, model, tokenizer, request: FinetuneRequest, run_dir: Path,
              result: FinetuneResult, provenance: dict,
              check: Callable[[Path], None] | None = None, weights: dict | None = None) -> None:
    from training.train.registry import build_manifest, publish

    hyperparameters = _hyperparameters(request)
    final = next((r for r in reversed(_history(run_dir)) if "val_loss" in r), {})
    manifest = build_manifest(
        name=request.name, method=request.method.method, base_model=request.base_model,
        **provenance, hyperparameters=hyperparameters, best_step=result.best_step,
        metrics={"best_val_loss": result.best_val_loss,
                 "val_loss_before": result.val_loss_before,
                 "last_val_loss": final.get("val_loss"), "steps": result.steps,
                 "stopped_early": result.stopped_early, "data": result.data})

    def save_weights(folder: Path) -> None:
        model.save_pretrained(folder, state_dict=weights)  # None: the model's own
        tokenizer.save_pretrained(folder)

    publish(target, save_weights, manifest, run_dir / "metrics.jsonl", check)


def _history(run_dir: Path) -> list[dict]:
    import json

    path = run_dir / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line]
