"""Same-shape models for the GPU training benchmarks: random-initialised models of the shapes
teams fine-tune, built from their configs (no weights to download), and the shared settings.
"""

from __future__ import annotations

import os

from train_data import SHARED, conditionalqa

SHAPES = {
    "smollm2-135m": dict(model_type="llama", hidden_size=576, intermediate_size=1536,
                         num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                         vocab_size=49152, tie_word_embeddings=True, head_dim=64),
    "qwen2-0.5b": dict(model_type="qwen2", hidden_size=896, intermediate_size=4864,
                       num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                       vocab_size=151936, tie_word_embeddings=True),
    "llama3-8b": dict(model_type="llama", hidden_size=4096, intermediate_size=14336,
                      num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                      vocab_size=128256, tie_word_embeddings=False, rope_theta=500000.0),
}
BATCH, MAX_LEN, WARMUP = 16, 1024, 3
# Conversations per micro-batch, per shape: ConditionalQA conversations average ~190 tokens, so
# 40 are ~7.6k tokens, the size of the packed rows TRL's packing run gets (conversations * 192
# tokens). The 8B shape takes half as many (its activations without checkpointing).
CONVERSATIONS = {"smollm2-135m": 40, "qwen2-0.5b": 40, "llama3-8b": 20}
ROW_TOKENS_PER_CONVERSATION = 192
DEVICE = os.environ.get("BENCH_DEVICE", "cuda")  # "cpu" only to dry-run this script


def cqa_rows() -> list[list[dict]]:
    return conditionalqa(SHARED / "conditionalqa" / "train_qa_sample.jsonl")


def build_model(shape: str, attention: str):
    import torch
    from transformers import AutoConfig

    from transformers import AutoModelForCausalLM

    settings = dict(SHAPES[shape])
    config = AutoConfig.for_model(settings.pop("model_type"), **settings, use_cache=False)
    config._attn_implementation = attention
    with torch.device(DEVICE):
        torch.manual_seed(0)
        return AutoModelForCausalLM.from_config(
            config, dtype=torch.bfloat16 if DEVICE == "cuda" else torch.float32,
            attn_implementation=attention)
