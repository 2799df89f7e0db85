"""Run under ``torchrun --nproc_per_node 2`` by tests/test_train_fsdp.py (gloo, CPU): an FSDP
run straight through, and one interrupted after its first checkpoint and resumed.

    torchrun --nproc_per_node 2 tests/fsdp_worker.py DATA_DIR MODEL_DIR [DEVICE]

With DEVICE ``cuda`` the same check runs on GPUs (NCCL, bf16).
"""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from pathlib import Path

import torch

from training.train.finetune import FinetuneRequest, finetune
from training.train.loop import LoopSettings
from training.train.model_setup import MethodSettings


def main(data_dir: Path, model_dir: Path, device: str) -> None:
    # One process group for the three runs (a group re-created in the same processes can hang).
    torch.distributed.init_process_group("nccl" if device == "cuda" else "gloo")
    if device == "cuda":
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    request = FinetuneRequest(
        data_dir=data_dir, dataset="facts", name="straight", base_model=str(model_dir),
        method=MethodSettings(lora_r=4, lora_alpha=8, lora_dropout=0.0), max_seq_len=256,
        device=device, distributed="fsdp", gradient_checkpointing=True,
        loop=LoopSettings(learning_rate=5e-3, batch_size=2, max_steps=4, eval_every=2,
                          patience=None, warmup=0, seed=7))
    finetune(request, progress=False)

    def interrupt(record: dict) -> None:
        if record["step"] == 3:  # after the step-2 checkpoint, like a Ctrl-C
            raise KeyboardInterrupt

    try:
        finetune(replace(request, name="resumed"), on_record=interrupt, progress=False)
    except KeyboardInterrupt:
        pass
    shards = data_dir / "runs/resumed/last-2.dcp"  # the checkpoint is sharded (DCP), not last.pt
    if not (shards / ".metadata").is_file() or len(list(shards.glob("*.distcp"))) != 2:
        raise SystemExit(f"no sharded checkpoint in {shards}")
    finetune(replace(request, name="resumed", resume=True), progress=False)
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else "cpu")
