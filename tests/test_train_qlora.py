"""QLoRA (``--quantize 4bit``) needs CUDA and LoRA: anything else is refused before any model or
dataset is read, with the fix in the message."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from app.cli import main
from training.errors import TrainingError
from training.train.quantize import check_quantization


def test_cli_refuses_qlora_on_a_cpu_before_loading_anything(tiny_config, isolated_state):
    out = CliRunner().invoke(main, ["train", "--config", str(tiny_config), "--data", "missing",
                                    "--name", "q", "--quantize", "4bit", "--device", "cpu"])
    assert out.exit_code == 1
    assert out.output.strip().splitlines()[-1] == (
        "error: --quantize 4bit (QLoRA) needs a CUDA GPU: bitsandbytes' NF4 kernels do not run "
        "on this machine's CPU; drop --quantize to train LoRA in full precision here, or run on "
        "an NVIDIA GPU")
    assert not (isolated_state / "runs").exists()  # nothing started (the dataset is not read)


@pytest.mark.parametrize("method, distributed, message", [
    ("full", "ddp", "method 'full' would update the quantized weights: use --method lora"),
    ("lora", "fsdp", "--quantize 4bit does not shard with FSDP here; use --distributed ddp"),
])
def test_qlora_refuses_settings_it_cannot_train(method, distributed, message):
    with pytest.raises(TrainingError, match=message):
        check_quantization("4bit", method, "cuda", distributed)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without "
                    "CUDA; on a GPU the same settings train")
def test_qlora_on_auto_device_without_cuda_is_refused():
    with pytest.raises(TrainingError, match="needs a CUDA GPU"):
        check_quantization("4bit", "lora", "auto")
