"""FSDP under ``torchrun``: two CPU processes (gloo) shard the tiny model, write sharded
checkpoints, resume from them, and save one adapter that loads on a CPU without torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from train_support import fact_dataset, make_tiny_model


def test_fsdp_run_resumes_from_sharded_checkpoints_and_saves_one_loadable_adapter(tmp_path):
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    model_dir = make_tiny_model(tmp_path / "tiny")
    data_dir = tmp_path / "data"
    fact_dataset(data_dir, model_dir)
    tests = Path(__file__).parent
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(tests.parent), str(tests)])}
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
         "--standalone", str(tests / "fsdp_worker.py"), str(data_dir), str(model_dir)],
        env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, _first_failure(done.stderr)

    straight = load_file(str(data_dir / "adapters/straight/adapter_model.safetensors"))
    resumed = load_file(str(data_dir / "adapters/resumed/adapter_model.safetensors"))
    assert straight.keys() == resumed.keys() and any("lora_B" in key for key in straight)
    for key in straight:  # full tensors, not shards, and the resume continued the same run
        torch.testing.assert_close(resumed[key], straight[key], rtol=1e-4, atol=1e-5)
    records = [json.loads(line) for line in
               (data_dir / "adapters/resumed/metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [0, 1, 2, 3, 4]
    manifest = json.loads((data_dir / "adapters/resumed/adapter_manifest.json").read_text())
    assert manifest["hyperparameters"]["distributed"] == "fsdp"
    assert not (data_dir / "runs/resumed").exists()

    base = AutoModelForCausalLM.from_pretrained(model_dir)
    tuned = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model_dir),
                                      str(data_dir / "adapters/straight"))
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        assert not torch.allclose(tuned(ids).logits, base(ids).logits)


def _first_failure(stderr: str) -> str:
    """The traceback of the rank that failed first: the other rank only reports the lost peer."""
    lines = stderr.splitlines()
    starts = [i for i, line in enumerate(lines) if "Traceback" in line]
    return "\n".join(lines[starts[0]:starts[0] + 60]) if starts else stderr[-3000:]
