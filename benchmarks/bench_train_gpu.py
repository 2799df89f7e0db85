"""GPU LoRA fine-tuning: speed vs TRL, DDP scaling, and quality on real data.

Parts (each prints a Markdown table; run them on a CUDA machine):
  speed    ours vs TRL SFTTrainer on random-init SmolLM2-135M-, Qwen2-0.5B- and
           Llama-3-8B-shaped models (bf16, LoRA r=16 all-linear, the same ConditionalQA
           conversations, the same tokens per micro-batch): real tokens/s, MFU, peak memory.
           Each run is a subprocess, so peak memory is its own. ``--runs`` picks runs.
  ddp      ``chatbot train`` under torchrun on 1 and N GPUs (``--distributed ddp|fsdp``,
           ``--method lora|full``, ``--shape``): scaling efficiency; a small shape's saved
           adapter or model is then loaded on the CPU.
  quality  the real SmolLM2-135M-Instruct (from the GGUF given with --gguf) fine-tuned by
           ``chatbot train`` on ConditionalQA and SGD: validation loss before/after, held-out
           dev loss of base vs fine-tuned.

    python benchmarks/bench_train_gpu.py speed --tokenizer DIR [--shapes llama3-8b]
    python benchmarks/bench_train_gpu.py ddp --tokenizer DIR --gpus 2
    python benchmarks/bench_train_gpu.py ddp --tokenizer DIR --distributed fsdp --shape llama3-8b
    python benchmarks/bench_train_gpu.py quality --gguf FILE
Shared data: $TRAIN_BENCH_DATA (default ../shared/data). The same-shape models are built by
train_shapes.py; the ``ddp`` and ``quality`` parts, which run ``chatbot train`` as a command, are
in train_command_runs.py.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from train_command_runs import ddp, quality  # noqa: E402
from train_data import count_real_tokens  # noqa: E402
from train_shapes import (BATCH, CONVERSATIONS, DEVICE, MAX_LEN, ROW_TOKENS_PER_CONVERSATION,  # noqa: E402
                          SHAPES, WARMUP, build_model, cqa_rows)

PEAK_BF16 = {"H100": 989e12, "H200": 989e12}  # dense bf16 tensor-core peak (SXM)
TIMED = int(os.environ.get("BENCH_TIMED_STEPS", "12"))


def sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()
SPEED_RUNS = {"trl-default": "TRL SFTTrainer defaults (bf16, checkpointing, padding)",
              "trl-packed": "TRL packing (bfd, padding-free) + the same varlen kernel, no ckpt",
              "ours-eager": "chatbot train --compile off (packed, varlen, answer-only logits)",
              "ours": "chatbot train (+ per-layer torch.compile, the CUDA default)",
              "ours-ckpt": "chatbot train + gradient checkpointing"}
DEFAULT_RUNS = "trl-packed,ours-eager,ours"


def linear_params(model) -> int:
    from torch import nn

    return sum(m.weight.numel() for name, m in model.named_modules()
               if isinstance(m, nn.Linear) and "lm_head" not in name and "lora" not in name)


def speed_ours(shape: str, tokenizer_dir: str, checkpointing: bool, compiled: bool) -> dict:
    from training.train import attention

    model = build_model(shape, attention.register() if DEVICE == "cuda" else "sdpa")
    return train_timed(model, shape, tokenizer_dir, checkpointing, compiled)


def train_timed(model, shape: str, tokenizer_dir: str, checkpointing: bool,
                compiled: bool) -> dict:
    """LoRA r=16 all-linear on ``model`` through our loop; real tokens and seconds after warm-up."""
    import torch
    from transformers import AutoTokenizer

    from training.train.compiled import compile_layers
    from training.train.loop import LoopSettings, Workers, train_loop
    from training.train.model_setup import MethodSettings, SupervisedLoss, apply_method
    from training.train.tokenize import render_all

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    examples, _ = render_all(cqa_rows() * 4, tokenizer, "all_assistant", MAX_LEN)
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    dense = linear_params(model)
    model = apply_method(model, MethodSettings("lora", lora_r=16, lora_alpha=32, lora_dropout=0.0))
    if compiled:
        compile_layers(model)
    loss = SupervisedLoss(model, attention_kwargs=DEVICE == "cuda")
    if DEVICE == "cuda":
        torch.cuda.reset_peak_memory_stats()
    state = train_loop(loss, model, examples, examples[:8], LoopSettings(
        max_steps=WARMUP + TIMED, batch_size=CONVERSATIONS[shape], eval_every=10 ** 6, patience=None,
        bf16=DEVICE == "cuda"), Path(tempfile.mkdtemp()), Workers(torch.device(DEVICE)),
        progress=False)
    sync()
    steps = [r for r in state.history if "train_loss" in r]
    first, last = steps[WARMUP - 1], steps[-1]
    return {"tokens": last["tokens"] - first["tokens"],
            "seconds": last["elapsed_s"] - first["elapsed_s"], "dense_params": dense}


def speed_trl(shape: str, tokenizer_dir: str, packed: bool) -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from training.train import attention

    rows = cqa_rows() * 4
    data = Dataset.from_dict({"prompt": [r[:-1] for r in rows], "completion": [r[-1:] for r in rows]})
    model = build_model(shape, attention.register() if packed and DEVICE == "cuda" else "sdpa")
    dense = linear_params(model)
    settings = dict(output_dir=tempfile.mkdtemp(), max_steps=WARMUP + TIMED,
                    per_device_train_batch_size=BATCH, max_length=MAX_LEN, logging_steps=1,
                    report_to=[], save_strategy="no", dataloader_num_workers=0, seed=42,
                    use_cpu=DEVICE == "cpu")
    if packed:  # one packed row holds about as many tokens as our micro-batch
        settings.update(packing=True, per_device_train_batch_size=1,
                        max_length=CONVERSATIONS[shape] * ROW_TOKENS_PER_CONVERSATION,
                        gradient_checkpointing=False)
    times, tokens = [], []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            sync()
            times.append(time.perf_counter())

    trainer = SFTTrainer(model=model, args=SFTConfig(**settings), train_dataset=data,
                         processing_class=AutoTokenizer.from_pretrained(tokenizer_dir),
                         peft_config=LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0,
                                                target_modules="all-linear", task_type="CAUSAL_LM"),
                         callbacks=[Clock()])
    count_real_tokens(trainer, tokens)
    if DEVICE == "cuda":
        torch.cuda.reset_peak_memory_stats()
    trainer.train()
    return {"tokens": sum(tokens[WARMUP:len(times)]), "seconds": times[-1] - times[WARMUP - 1],
            "dense_params": dense}


def speed_worker(name: str, shape: str, tokenizer_dir: str) -> None:
    import torch

    if name.startswith("ours"):
        result = speed_ours(shape, tokenizer_dir, checkpointing=name == "ours-ckpt",
                            compiled=name in ("ours", "ours-ckpt"))
    else:
        result = speed_trl(shape, tokenizer_dir, packed=name == "trl-packed")
    cuda = torch.cuda.is_available()
    result["peak_gb"] = torch.cuda.max_memory_allocated() / 2 ** 30 if cuda else 0.0
    result["gpu"] = torch.cuda.get_device_name() if cuda else "cpu"
    print("RESULT " + json.dumps(result), flush=True)


def check_varlen(tokenizer_dir: str) -> None:
    """The varlen kernel computes the same loss as sdpa's block-diagonal mask (bf16 tolerance)."""
    import torch
    from transformers import AutoTokenizer

    from training.train import attention
    from training.train.batches import pack
    from training.train.model_setup import SupervisedLoss
    from training.train.tokenize import render_all

    examples, _ = render_all(cqa_rows()[:8], AutoTokenizer.from_pretrained(tokenizer_dir),
                             "all_assistant", MAX_LEN)
    model = build_model("smollm2-135m", attention.register())
    batch = pack(examples).to("cuda")
    with torch.no_grad():
        varlen = SupervisedLoss(model, attention_kwargs=True)(batch).item()
        model.config._attn_implementation = "sdpa"
        for module in model.modules():
            if hasattr(module, "config"):
                module.config._attn_implementation = "sdpa"
        dense = SupervisedLoss(model)(batch).item()
    print(f"varlen check: loss sum varlen {varlen:.4f} vs sdpa {dense:.4f} "
          f"(relative {abs(varlen - dense) / abs(dense):.2e})", flush=True)


def speed(args) -> None:
    if DEVICE == "cuda":
        check_varlen(args.tokenizer)
    print(f"\n| model | run | real tokens/s | vs TRL packed | MFU (4N) | peak GPU GB |")
    print("|---|---|---|---|---|---|")
    for shape in args.shapes.split(","):
        results = {}
        for name in args.runs.split(","):
            out = subprocess.run([sys.executable, __file__, "speed-worker", "--run", name,
                                  "--shape", shape, "--tokenizer", args.tokenizer],
                                 capture_output=True, text=True)
            found = [l for l in out.stdout.splitlines() if l.startswith("RESULT ")]
            if not found:
                print(f"| {shape} | {SPEED_RUNS[name]} | failed: "
                      f"{(out.stderr.strip().splitlines() or ['?'])[-1][:150]} | | | |")
                continue
            result = results[name] = json.loads(found[-1][7:])
            rate = result["tokens"] / result["seconds"]
            base = results.get("trl-packed")
            ratio = f"{rate / (base['tokens'] / base['seconds']):.2f}x" if base else "-"
            peak = next((v for k, v in PEAK_BF16.items() if k in result["gpu"]), 989e12)
            mfu = 4 * result["dense_params"] * rate / peak  # LoRA: forward + activation grads
            print(f"| {shape} | {SPEED_RUNS[name]} | {rate:,.0f} | {ratio} | {mfu:.1%} | "
                  f"{result['peak_gb']:.1f} |", flush=True)
            print(json.dumps({shape: {name: result}}), file=sys.stderr, flush=True)
            if os.environ.get("BENCH_LOG"):
                with open(os.environ["BENCH_LOG"], "a") as log:
                    log.write(f"== {shape} {name}\n{out.stdout[-4000:]}\n{out.stderr[-8000:]}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=["speed", "speed-worker", "ddp", "quality"])
    parser.add_argument("--tokenizer", help="A directory with the SmolLM2 tokenizer.")
    parser.add_argument("--run", choices=list(SPEED_RUNS))
    parser.add_argument("--shape", choices=list(SHAPES), default="smollm2-135m")
    parser.add_argument("--shapes", default=",".join(SHAPES), help="Comma-separated shapes.")
    parser.add_argument("--runs", default=DEFAULT_RUNS,
                        help=f"Comma-separated runs of {', '.join(SPEED_RUNS)}.")
    parser.add_argument("--gpus", type=int, default=2)
    parser.add_argument("--distributed", choices=["ddp", "fsdp"], default="ddp")
    parser.add_argument("--method", choices=["lora", "full"], default="lora")
    parser.add_argument("--batch-size", type=int, default=BATCH,
                        help="ddp: conversations per micro-batch and GPU.")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--compile", choices=["auto", "on", "off"], default="auto")
    parser.add_argument("--gguf", help="SmolLM2-135M-Instruct GGUF file (quality part).")
    args = parser.parse_args()
    if args.part == "speed-worker":
        return speed_worker(args.run, args.shape, args.tokenizer)
    {"speed": speed, "ddp": ddp, "quality": quality}[args.part](args)


if __name__ == "__main__":
    main()
