"""QLoRA: the frozen base in 4-bit NF4 (bitsandbytes), LoRA adapters trained on top.

An 8B base takes ~5.5 GB in NF4 instead of 16 GB in bf16, so it fine-tunes on one 24 GB GPU.
The adapters keep float32 master weights and compute in bf16 (the loop's autocast); the saved
adapter is an ordinary LoRA adapter, served on the base in its configured precision.
bitsandbytes' NF4 kernels run on CUDA only, so anything else is refused before a model loads.

    chatbot train --data NAME --name ADAPTER --quantize 4bit
"""

from __future__ import annotations

import importlib.util

import torch

from training.errors import TrainingError

QUANTIZATIONS = ("4bit",)


def check_quantization(quantize: str | None, method: str, device: str,
                       distributed: str = "ddp") -> None:
    """Refuse a quantized run that cannot work here, naming the fix; nothing is loaded yet."""
    if quantize is None:
        return
    if quantize not in QUANTIZATIONS:
        raise TrainingError(f"unknown quantization {quantize!r}; use --quantize 4bit or leave "
                            "it out")
    if method != "lora":
        raise TrainingError(f"--quantize 4bit trains LoRA adapters on a frozen 4-bit base; "
                            f"method {method!r} would update the quantized weights: use "
                            "--method lora, or drop --quantize")
    if distributed == "fsdp":
        raise TrainingError("--quantize 4bit does not shard with FSDP here; use "
                            "--distributed ddp (each GPU holds the 4-bit base) or drop --quantize")
    if device == "cpu" or not torch.cuda.is_available():
        raise TrainingError("--quantize 4bit (QLoRA) needs a CUDA GPU: bitsandbytes' NF4 "
                            "kernels do not run on this machine's CPU; drop --quantize to train "
                            "LoRA in full precision here, or run on an NVIDIA GPU")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise TrainingError("--quantize 4bit needs bitsandbytes, which is not installed; run "
                            "`pip install bitsandbytes` (or `pip install 'chatbot-builder[gpu]'`)")


def nf4_config():
    """4-bit NF4 with double quantization (the QLoRA paper's setting), bf16 compute."""
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                              bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=torch.bfloat16)


def prepare_for_training(model):
    """peft's preparation of a k-bit model: norms and head in float32 for stable training."""
    from peft import prepare_model_for_kbit_training

    # Checkpointing, if asked for, is enabled by the caller (non-reentrant, like other runs).
    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
