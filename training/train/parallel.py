"""Several processes under ``torchrun``: DDP (a full copy per GPU) or FSDP2 (sharded weights).

``ddp`` averages gradients between full copies of the model: the fastest choice while the model,
its gradients and optimizer state fit one GPU. ``fsdp`` shards parameters, gradients and
optimizer state across the processes (``torch.distributed.fsdp.fully_shard``, one unit per
decoder layer), so a model that does not fit one GPU trains on several; each process loads
the base on the CPU and every layer moves to the GPU already sharded. Sharded runs checkpoint
with ``torch.distributed.checkpoint`` (each process writes its shards; frozen base weights are
not written, they come from the base model), and the finished adapter or model is gathered
once into full tensors on rank 0, so it loads anywhere, a CPU included.

    torchrun --nproc-per-node 4 -m app train --data NAME --name ADAPTER --distributed fsdp
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from training.errors import TrainingError

STRATEGIES = ("ddp", "fsdp")


def parallel(loss_module, model, strategy: str, device: torch.device, world: int,
             bf16: bool):
    """The module the loop calls: ``loss_module`` itself in one process, else wrapped."""
    if strategy not in STRATEGIES:
        raise TrainingError(f"unknown --distributed {strategy!r}; use ddp or fsdp")
    if world == 1:
        return loss_module
    if strategy == "fsdp":
        return _shard(loss_module, model, device, world, bf16)
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(loss_module, device_ids=ids)


def _shard(loss_module, model, device: torch.device, world: int, bf16: bool):
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mesh = init_device_mesh(device.type, (world,))
    # bf16 all-gathers halve the traffic; gradients are reduced in float32 for accuracy.
    policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) \
        if bf16 and device.type == "cuda" else MixedPrecisionPolicy()
    causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    for layer in causal_lm.get_decoder().layers:
        fully_shard(layer, mesh=mesh, mp_policy=policy)
    fully_shard(loss_module, mesh=mesh, mp_policy=policy)  # embeddings, final norm, LM head
    return loss_module


def is_sharded(model) -> bool:
    from torch.distributed.tensor import DTensor

    return any(isinstance(param, DTensor) for param in model.parameters())


def save_sharded(folder: Path, model, optimizer=None) -> None:
    """Every process writes its shards of the trainable weights (and optimizer state)."""
    import torch.distributed.checkpoint as dcp

    dcp.save(_state(model, optimizer), checkpoint_id=str(folder))


def load_sharded(folder: Path, model, optimizer=None) -> None:
    """Read a :func:`save_sharded` folder back into the sharded model (and optimizer)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (StateDictOptions, set_model_state_dict,
                                                         set_state_dict)

    state = _state(model, optimizer)
    try:
        dcp.load(state, checkpoint_id=str(folder))
    except Exception as exc:  # a torn folder or other settings: say which, never continue
        raise TrainingError(f"sharded checkpoint {folder} is unreadable or was made with other "
                            f"settings ({exc}); delete {folder.parent} and start again without "
                            "--resume") from None
    options = StateDictOptions(ignore_frozen_params=True, strict=False)
    if optimizer is None:
        set_model_state_dict(model, state["model"], options=options)
    else:
        set_state_dict(model, optimizer, model_state_dict=state["model"],
                       optim_state_dict=state["optimizer"], options=options)


def full_state(model, trainable_only: bool) -> dict[str, torch.Tensor]:
    """The whole weights (or only the trained ones) as full CPU tensors on rank 0, empty on the
    other ranks; every process must call it."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(
        full_state_dict=True, cpu_offload=True, ignore_frozen_params=trainable_only))


def keep_only(run_dir: Path, pattern: str, keep: str) -> None:
    """Remove the sharded folders matching ``pattern`` except ``keep`` (older checkpoints)."""
    for folder in run_dir.glob(pattern):
        if folder.name != keep:
            shutil.rmtree(folder, ignore_errors=True)


def _state(model, optimizer) -> dict:
    from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                         get_state_dict)

    options = StateDictOptions(ignore_frozen_params=True)
    if optimizer is None:
        return {"model": get_model_state_dict(model, options=options)}
    model_state, optimizer_state = get_state_dict(model, optimizer, options=options)
    return {"model": model_state, "optimizer": optimizer_state}
