"""Continuous batching on one GPU: answers per minute, time to first token and tokens/s with up
to 32 concurrent clients, batched vs one at a time, on same-shape random models.

    python benchmarks/bench_batching_gpu.py [--shapes smollm2-135m qwen2-0.5b] [--clients 1 8 16 32]

Runs where no model file is at hand (the lent GPU machines): each shape is built from its
config with random weights (bf16) beside a word-level tokenizer of the same vocabulary size, so
prompts are exactly ``--prompt-tokens`` long and every answer runs to ``--new-tokens`` (a random
model almost never picks the end token). The clients call the generator in-process
(``chatbot/batching.py`` with ``max_batch`` = the most clients, against
``TransformersGenerator``, one answer at a time), closed-loop as in load_clients.py; the HTTP
layer is measured on the CPU by bench_chat_concurrency.py.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from load_clients import closed_loop  # noqa: E402

SHAPES = {
    "smollm2-135m": ("llama", dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                                   num_attention_heads=9, num_key_value_heads=3,
                                   vocab_size=49152, tie_word_embeddings=True,
                                   max_position_embeddings=8192, rope_theta=100000.0)),
    # Qwen2's sizes on the Llama architecture (transformers loads a Qwen2 model's own tokenizer
    # class, which rejects the word-level one); attention_bias adds Qwen2's q/k/v biases
    "qwen2-0.5b": ("llama", dict(attention_bias=True, hidden_size=896, intermediate_size=4864,
                                 num_hidden_layers=24, num_attention_heads=14,
                                 num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True,
                                 max_position_embeddings=32768, rope_theta=1000000.0)),
}
CHAT_TEMPLATE = ("{% for m in messages %}{{ m['content'] }} {% endfor %}"
                 "{% if add_generation_prompt %}t2 {% endif %}")


def build_model(shape: str, folder: Path) -> Path:
    """A random ``shape`` model and its word-level tokenizer (``t0``...), saved in ``folder``."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast

    kind, sizes = SHAPES[shape]
    vocab = {f"t{i}": i for i in range(sizes["vocab_size"])}
    core = Tokenizer(models.WordLevel(vocab, unk_token="t0"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="t0", eos_token="t1")
    tokenizer.chat_template = CHAT_TEMPLATE
    config = AutoConfig.for_model(kind, **sizes, bos_token_id=0, eos_token_id=1,
                                  pad_token_id=0)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    path = folder / shape
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def run_shape(shape: str, args, folder: Path) -> list[tuple]:
    import random

    from chatbot.batching import BatchingTransformersGenerator
    from chatbot.generate import GenerationSettings, TransformersGenerator
    from chatbot.types import Message

    path = str(build_model(shape, folder))
    settings = GenerationSettings(args.new_tokens, 0.0, 1.0, 1.0)
    rng = random.Random(0)
    prompts = [" ".join(f"t{rng.randrange(3, 40000)}" for _ in range(args.prompt_tokens - 1))
               for _ in range(64)]
    generators = {max(args.clients): BatchingTransformersGenerator(
                      path, shape, args.device, "bfloat16", None, max(args.clients)),
                  1: TransformersGenerator(path, shape, args.device, "bfloat16")}
    rows = []
    for max_batch, generator in generators.items():
        list(generator.stream([Message("user", prompts[0])], settings))  # warm-up

        def ask(index: int, n: int, generator=generator):
            text = prompts[(index * 7 + n) % len(prompts)]
            return generator.stream([Message("user", text)], settings)

        for clients in args.clients:
            result = closed_loop(ask, clients, args.seconds, args.ramp * clients / 32)
            rows.append((shape, max_batch, clients, result))
            print(f"done: {shape}, max_batch {max_batch}, {clients} clients", file=sys.stderr,
                  flush=True)
    return rows


def print_table(rows: list[tuple], args, card: str) -> None:
    print(f"{card}; bf16 random weights; prompt {args.prompt_tokens} tokens, answer "
          f"{args.new_tokens} tokens, greedy; {args.seconds:g} s window per run\n")
    print("| shape | max_batch | clients | answers | failures | answers/min | vs 1 client | "
          "tokens/s | TTFT p50, s | TTFT p95, s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    base = {(s, mb): r for s, mb, c, r in rows if c == args.clients[0]}
    for shape, max_batch, clients, r in rows:
        done = r.finished_in_window()
        tokens = sum(len(a.text.split()) for a in done)
        b = base[(shape, max_batch)]
        print(f"| {shape} | {max_batch} | {clients} | {len(done)} | {len(r.failures())} | "
              f"{r.per_minute:.0f} | {r.per_minute / max(b.per_minute, 1e-9):.2f} | "
              f"{tokens / r.window_s:.0f} | {r.ttft(50):.3f} | {r.ttft(95):.3f} |")
    for shape, max_batch, clients, r in rows:
        for failure in r.failures()[:2]:
            print(f"- {shape}, max_batch {max_batch}, {clients} clients: {failure}")


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", choices=list(SHAPES), default=list(SHAPES))
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 16, 32])
    parser.add_argument("--prompt-tokens", type=int, default=512)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--ramp", type=float, default=4.0, help="seconds for 32 clients to start")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    card = torch.cuda.get_device_name() if args.device == "cuda" else "CPU"
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for shape in args.shapes:
            rows += run_shape(shape, args, Path(folder))
    print_table(rows, args, card)


if __name__ == "__main__":
    main()
