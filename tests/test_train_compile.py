"""Per-layer compilation: on by default on CUDA only, so CPU training is unchanged."""

from __future__ import annotations

import pytest
import torch

from training.errors import TrainingError
from training.train.compiled import compile_layers, wants_compile


def test_auto_compiles_on_cuda_only_and_flags_override():
    assert wants_compile("auto", torch.device("cuda")) is True
    assert wants_compile("auto", torch.device("cpu")) is False
    assert wants_compile("off", torch.device("cuda")) is False
    assert wants_compile("on", torch.device("cpu")) is True
    with pytest.raises(TrainingError, match="compile"):
        wants_compile("fast", torch.device("cpu"))


def test_every_decoder_layer_of_a_lora_model_is_compiled():
    from transformers import LlamaConfig, LlamaForCausalLM

    from training.train.model_setup import MethodSettings, apply_method

    config = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32,
                         num_hidden_layers=3, num_attention_heads=2, num_key_value_heads=1)
    model = apply_method(LlamaForCausalLM(config), MethodSettings())
    assert compile_layers(model) == 3
    layers = model.get_base_model().get_decoder().layers
    assert all(layer._compiled_call_impl is not None for layer in layers)
