"""Regional compilation: each decoder layer through ``torch.compile`` (CUDA by default).

Between the matrix products of a small or LoRA-wrapped model, the GPU mostly waits on many tiny
kernels (norms, rotary embeddings, activations, LoRA's scale-and-add). Compiling each decoder
layer fuses them. The layers share one forward, so one graph is compiled (well under a minute)
instead of the whole model; packed rows change length every step, so the graph is compiled with
dynamic shapes and is not recompiled per batch.
"""

from __future__ import annotations

import torch

from training.errors import TrainingError

MODES = ("auto", "on", "off")


def wants_compile(mode: str, device: torch.device) -> bool:
    """``auto`` compiles on CUDA only (on CPUs the compile time outweighs the gain)."""
    if mode not in MODES:
        raise TrainingError(f"unknown compile setting {mode!r}; use one of {', '.join(MODES)}")
    return mode == "on" or (mode == "auto" and device.type == "cuda")


def compile_layers(model) -> int:
    """Compile every decoder layer of ``model`` (a causal LM, peft-wrapped or not) in place;
    returns how many were compiled."""
    causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    layers = causal_lm.get_decoder().layers
    for layer in layers:
        layer.compile(dynamic=True)
    return len(layers)
