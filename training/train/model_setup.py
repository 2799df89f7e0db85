"""The model a run trains: base weights, the method's trainable parameters, and the loss.

Methods: ``lora`` (peft adapters, default on every linear layer), ``freeze`` (only the last N
decoder blocks and the final norm learn; the earlier ones are frozen feature extractors) and
``full``. The loss module gathers the hidden states at supervised positions before the LM head
and runs the head plus cross-entropy in checkpointed chunks, so the 49k-vocabulary logits of a
whole batch never exist at once (they dominate memory in a plain ``model(labels=...)`` call).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from chatbot.adapters import peft_notice_muted
from training.train.batches import PackedBatch
from training.errors import TrainingError

METHODS = ("lora", "freeze", "full")


@dataclass(frozen=True)
class MethodSettings:
    method: str = "lora"
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: str | tuple[str, ...] = "all-linear"
    train_blocks: int = 2


def load_base(model_dir: str, dtype: torch.dtype, device: torch.device, attention: str,
              quantize: str | None = None):
    """The base causal LM and its tokenizer; a missing or broken model is a clear error.

    ``quantize="4bit"`` loads the linear layers in NF4 straight onto ``device`` (QLoRA)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quantized = {}
    if quantize:
        from training.train.quantize import nf4_config

        quantized = {"quantization_config": nf4_config(), "device_map": {"": str(device)}}
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype,
                                                     attn_implementation=attention, **quantized)
    except (OSError, ValueError) as exc:
        raise TrainingError(f"base model {model_dir} could not be loaded ({exc}); check "
                            "models.chat in the config or run `chatbot models prepare`") from None
    if tokenizer.chat_template is None:
        raise TrainingError(f"base model {model_dir} has no chat template; fine-tune an "
                            "instruct/chat model whose tokenizer carries one")
    model.config.use_cache = False
    if quantize:
        from training.train.quantize import prepare_for_training

        return prepare_for_training(model), tokenizer
    return model.to(device), tokenizer


def apply_method(model, settings: MethodSettings):
    """Make only the method's parameters trainable; returns the model to train."""
    if settings.method == "lora":
        from peft import LoraConfig, get_peft_model

        targets = settings.target_modules
        config = LoraConfig(r=settings.lora_r, lora_alpha=settings.lora_alpha,
                            lora_dropout=settings.lora_dropout, task_type="CAUSAL_LM",
                            target_modules=targets if isinstance(targets, str) else list(targets))
        try:
            with peft_notice_muted():
                return get_peft_model(model, config)
        except ValueError as exc:
            raise TrainingError(f"LoRA target modules {targets!r} do not fit this model ({exc}); "
                                "use all-linear or names such as q_proj,v_proj") from None
    if settings.method == "freeze":
        blocks = model.get_decoder().layers
        if not 1 <= settings.train_blocks <= len(blocks):
            raise TrainingError(f"--train-blocks must be between 1 and {len(blocks)} "
                                f"(this model has {len(blocks)} blocks), got {settings.train_blocks}")
        model.requires_grad_(False)
        for block in blocks[-settings.train_blocks:]:
            block.requires_grad_(True)
        model.get_decoder().norm.requires_grad_(True)
        return model
    if settings.method == "full":
        return model
    raise TrainingError(f"unknown method {settings.method!r}; use one of {', '.join(METHODS)}")


def trainable_state(model) -> dict[str, torch.Tensor]:
    """The parameters that learn, by name, on the CPU: what checkpoints and best-weights
    snapshots save (only these change, so only these are written)."""
    return {name: param.detach().cpu() for name, param in model.named_parameters()
            if param.requires_grad}


def load_trainable(model, state: dict[str, torch.Tensor]) -> None:
    """Copy a ``trainable_state`` back into the model's parameters of the same names."""
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value)


class SupervisedLoss(nn.Module):
    """Summed cross-entropy at a packed batch's supervised positions; DDP wraps this module.

    Returns the loss summed over supervised tokens; the caller divides by the step's count.
    """

    def __init__(self, model, chunk: int = 1024, attention_kwargs: bool = False) -> None:
        super().__init__()
        self.model = model
        self.chunk = chunk
        self.attention_kwargs = attention_kwargs
        causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model
        self.decoder = causal_lm.get_decoder()
        self.head = causal_lm.get_output_embeddings()

    def forward(self, batch: PackedBatch) -> torch.Tensor:
        picked = self._hidden(batch).index_select(0, batch.positions)
        total = picked.new_zeros((), dtype=torch.float32)
        for start in range(0, picked.shape[0], self.chunk):
            part = picked[start:start + self.chunk]
            target = batch.targets[start:start + self.chunk]
            if torch.is_grad_enabled():
                total = total + checkpoint(self._chunk_loss, part, target, use_reentrant=False)
            else:
                total = total + self._chunk_loss(part, target)
        return total

    def _hidden(self, batch: PackedBatch) -> torch.Tensor:
        """Hidden states of the packed row, shape (T, hidden).

        With the varlen kernel (CUDA) the attention skips the other sequences' blocks; without
        it transformers builds a block-diagonal mask from the restarting position ids. (One
        forward per sequence avoids the masked blocks but measured ~1.6x slower on 2 CPU cores:
        smaller matrix products.)
        """
        extra = {}
        if self.attention_kwargs:
            extra = {"cu_seq_lens_q": batch.cu_seq_lens, "cu_seq_lens_k": batch.cu_seq_lens,
                     "max_length_q": batch.max_length, "max_length_k": batch.max_length}
        return self.decoder(input_ids=batch.input_ids, position_ids=batch.position_ids,
                            use_cache=False, **extra).last_hidden_state[0]

    def _chunk_loss(self, hidden: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = self.head(hidden).float()
        return F.cross_entropy(logits, target, reduction="sum")
