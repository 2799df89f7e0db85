"""GPU memory of LoRA fine-tuning on a big shape: bf16 base vs 4-bit NF4 base (QLoRA), each with
and without gradient checkpointing: peak GPU memory and real tokens/s.

A random-initialised model of the shape (Llama-3-8B by default) is saved once, then each run
loads it the way ``chatbot train`` does (``load_base``, ``--quantize 4bit`` for QLoRA) in its
own process, so its peak memory is its own; training is our loop on the ConditionalQA
conversations, LoRA r=16 all-linear, per-layer compile (the CUDA default) unless the run says
eager. Needs a CUDA GPU and bitsandbytes.

    python benchmarks/bench_train_memory.py --tokenizer DIR [--shape llama3-8b] [--runs ...]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_train_gpu import train_timed  # noqa: E402
from train_shapes import CONVERSATIONS, SHAPES, build_model  # noqa: E402

RUNS = {"lora": "LoRA, bf16 base", "lora-ckpt": "LoRA, bf16 base + gradient checkpointing",
        "qlora": "QLoRA, NF4 base", "qlora-ckpt": "QLoRA, NF4 base + gradient checkpointing",
        "qlora-eager": "QLoRA, NF4 base, --compile off"}


def save_model(shape: str, tokenizer_dir: str, folder: Path) -> None:
    import torch
    from transformers import AutoTokenizer

    build_model(shape, "sdpa").save_pretrained(folder)
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(folder)
    torch.cuda.empty_cache()


def worker(run: str, shape: str, model_dir: str, tokenizer_dir: str) -> None:
    import torch

    from training.train import attention
    from training.train.model_setup import load_base

    quantize = "4bit" if run.startswith("qlora") else None
    model, _ = load_base(model_dir, torch.bfloat16, torch.device("cuda"), attention.register(),
                         quantize=quantize)
    result = train_timed(model, shape, tokenizer_dir, checkpointing=run.endswith("-ckpt"),
                         compiled=not run.endswith("-eager"))
    result.update(peak_gb=torch.cuda.max_memory_allocated() / 2 ** 30,
                  reserved_gb=torch.cuda.max_memory_reserved() / 2 ** 30,
                  gpu=torch.cuda.get_device_name())
    print("RESULT " + json.dumps(result), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer", required=True, help="A directory with a tokenizer that "
                        "has a chat template (the SmolLM2 one).")
    parser.add_argument("--shape", default="llama3-8b", choices=list(SHAPES))
    parser.add_argument("--runs", default="lora,lora-ckpt,qlora,qlora-ckpt",
                        help=f"Comma-separated runs of {', '.join(RUNS)}.")
    parser.add_argument("--worker", choices=list(RUNS), help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, args.shape, args.model_dir, args.tokenizer)
    model_dir = Path(tempfile.mkdtemp()) / args.shape
    save_model(args.shape, args.tokenizer, model_dir)
    print(f"\n{args.shape} shape, {CONVERSATIONS[args.shape]} conversations per micro-batch\n")
    print("| run | real tokens/s | vs LoRA bf16 | peak GPU GB (allocated) | reserved GB |")
    print("|---|---|---|---|---|")
    base, gpu = None, "?"
    for run in args.runs.split(","):
        out = subprocess.run([sys.executable, __file__, "--worker", run, "--shape", args.shape,
                              "--model-dir", str(model_dir), "--tokenizer", args.tokenizer],
                             capture_output=True, text=True)
        found = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
        print(out.stderr[-6000:], file=sys.stderr, flush=True)
        if not found:
            print(f"| {RUNS[run]} | failed: "
                  f"{(out.stderr.strip().splitlines() or ['?'])[-1][:150]} | | | |", flush=True)
            continue
        result = json.loads(found[-1][7:])
        gpu = result["gpu"]
        rate = result["tokens"] / result["seconds"]
        base = base or (rate if run == "lora" else None)
        ratio = f"{rate / base:.2f}x" if base else "-"
        print(f"| {RUNS[run]} | {rate:,.0f} | {ratio} | {result['peak_gb']:.1f} | "
              f"{result['reserved_gb']:.1f} |", flush=True)
        print(json.dumps({run: result}), file=sys.stderr, flush=True)
    print(f"\ngpu: {gpu}")


if __name__ == "__main__":
    main()
