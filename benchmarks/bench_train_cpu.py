"""CPU LoRA fine-tuning speed and memory: ``chatbot train`` vs TRL's SFTTrainer + PEFT.

Same model (embedded SmolLM2-135M-Instruct, float32 unless TRL's defaults say otherwise), same
64 ConditionalQA conversations, LoRA r=16 alpha=32 on all linear layers, batch 4, max length
512, loss on the answer only. Each run is a subprocess, so its peak RSS is its own. Throughput
counts real (non-pad) tokens per second over the steps after the first (warm-up) step.

    .venv/bin/python benchmarks/bench_train_cpu.py [--steps 5] [--skip-trl-default]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from train_data import SHARED, conditionalqa, count_real_tokens, write_dataset  # noqa: E402

EXAMPLES, BATCH, MAX_LEN, RANK, ALPHA = 64, 4, 512, 16, 32
RUNS = {
    "ours": "chatbot train (fp32, packed, no padding, logits only at answer tokens)",
    "trl-best": "TRL SFTTrainer fp32, no checkpointing, padding_free",
    "trl-default": "TRL SFTTrainer defaults (bf16, gradient checkpointing, padding)",
}


def conversations() -> list[list[dict]]:
    return conditionalqa(SHARED / "conditionalqa" / "train_qa_sample.jsonl", EXAMPLES)


def run_ours(steps: int) -> dict:
    from transformers import AutoTokenizer

    from chatbot.models import chat_template_hash, resolve_model
    from chatbot.paths import DataPaths
    from training.train.finetune import FinetuneRequest, finetune
    from training.train.loop import LoopSettings
    from training.train.model_setup import MethodSettings

    model_dir = resolve_model("embedded:smollm2-135m-instruct")
    data_dir = Path(tempfile.mkdtemp())
    rows = conversations()
    write_dataset(data_dir, "bench", rows, rows[:2],
                  chat_template_hash(AutoTokenizer.from_pretrained(model_dir)))
    request = FinetuneRequest(
        data_dir=data_dir, dataset="bench", name="bench", base_model=model_dir,
        method=MethodSettings("lora", lora_r=RANK, lora_alpha=ALPHA, lora_dropout=0.0),
        loop=LoopSettings(max_steps=steps, batch_size=BATCH, eval_every=10_000, patience=None),
        max_seq_len=MAX_LEN, device="cpu", dtype="float32")
    finetune(request, progress=False)
    records = [json.loads(line) for line in
               (DataPaths(data_dir).adapter("bench") / "metrics.jsonl").read_text().splitlines()]
    steps_done = [r for r in records if "train_loss" in r]
    first, last = steps_done[0], steps_done[-1]
    return {"tokens": last["tokens"] - first["tokens"],
            "seconds": last["elapsed_s"] - first["elapsed_s"]}


def run_trl(steps: int, defaults: bool) -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from chatbot.models import resolve_model

    model_dir = resolve_model("embedded:smollm2-135m-instruct")
    rows = conversations()
    data = Dataset.from_dict({"prompt": [r[:-1] for r in rows], "completion": [r[-1:] for r in rows]})
    settings = dict(output_dir=tempfile.mkdtemp(), max_steps=steps, per_device_train_batch_size=BATCH,
                    max_length=MAX_LEN, logging_steps=1, report_to=[], save_strategy="no",
                    use_cpu=True, dataloader_num_workers=0, seed=42)
    if not defaults:
        # our examples are all under MAX_LEN, so no truncation is needed (padding_free requires it)
        settings.update(bf16=False, gradient_checkpointing=False, padding_free=True,
                        max_length=None)
    tokens: list[int] = []
    times: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            times.append(time.perf_counter())

    dtype = torch.float32
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype)
    trainer = SFTTrainer(model=model, args=SFTConfig(**settings), train_dataset=data,
                         processing_class=AutoTokenizer.from_pretrained(model_dir),
                         peft_config=LoraConfig(r=RANK, lora_alpha=ALPHA, lora_dropout=0.0,
                                                target_modules="all-linear",
                                                task_type="CAUSAL_LM"),
                         callbacks=[Clock()])
    count_real_tokens(trainer, tokens)
    trainer.train()
    return {"tokens": sum(tokens[1:len(times)]), "seconds": times[-1] - times[0]}


def worker(name: str, steps: int) -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    result = run_ours(steps) if name == "ours" else run_trl(steps, name == "trl-default")
    result["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2
    print("RESULT " + json.dumps(result), flush=True)


def measure(name: str, steps: int, timeout: float) -> dict:
    command = [sys.executable, __file__, "--worker", name, "--steps", str(steps)]
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"did not finish {steps} steps in {timeout:.0f} s"}
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    if not lines:
        return {"error": (out.stderr.strip().splitlines() or ["no output"])[-1][:200]}
    result = json.loads(lines[-1][len("RESULT "):])
    result["tokens_per_s"] = result["tokens"] / max(result["seconds"], 1e-9)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--worker", choices=list(RUNS))
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--skip-trl-default", action="store_true",
                        help="TRL's defaults crawl on CPUs without bf16 (minutes per step).")
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, args.steps)
    names = [n for n in RUNS if not (n == "trl-default" and args.skip_trl_default)]
    results = {}
    for name in names:
        steps = 2 if name == "trl-default" else args.steps
        results[name] = measure(name, steps, args.timeout)
        print(f"{name}: {results[name]}", file=sys.stderr, flush=True)
    print_table(results, args.steps)


def print_table(results: dict, steps: int) -> None:
    best = results.get("trl-best", {}).get("tokens_per_s")
    print(f"\nCPU LoRA fine-tuning, SmolLM2-135M, {EXAMPLES} ConditionalQA conversations, "
          f"r={RANK} all-linear, batch {BATCH}, max {MAX_LEN} tokens, {os.cpu_count()} cores\n")
    print("| run | real tokens/s | vs TRL best | peak RSS (GB) |")
    print("|---|---|---|---|")
    for name, result in results.items():
        if "error" in result:
            print(f"| {RUNS[name]} | {result['error']} | | |")
            continue
        ratio = f"{result['tokens_per_s'] / best:.2f}x" if best else "n/a"
        print(f"| {RUNS[name]} | {result['tokens_per_s']:.1f} | {ratio} | "
              f"{result['peak_rss_gb']:.2f} |")


if __name__ == "__main__":
    main()
