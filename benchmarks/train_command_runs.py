"""The parts of bench_train_gpu.py that run ``chatbot train`` as a command: the same command
under ``torchrun`` on 1 and N GPUs (``ddp``: scaling efficiency), and the real SmolLM2
fine-tuned on ConditionalQA and SGD (``quality``: held-out loss before and after).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from train_data import SHARED, conditionalqa, sgd, write_dataset
from train_shapes import MAX_LEN, WARMUP, build_model, cqa_rows

ROOT = Path(__file__).resolve().parents[1]


def write_bot(work: Path, model_dir: Path) -> Path:
    config = work / "bot.yaml"
    config.write_text(f"data_dir: {work / 'data'}\nmodels:\n  chat: {model_dir}\n")
    return config


def ddp(args) -> None:
    """Same ``chatbot train`` command on 1 GPU and on ``--gpus`` GPUs (torchrun)."""
    import torch
    from transformers import AutoTokenizer

    from chatbot.models import chat_template_hash

    work = Path(tempfile.mkdtemp())
    model_dir = work / "model"
    build_model(args.shape, "sdpa").save_pretrained(model_dir)
    torch.cuda.empty_cache()
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    tokenizer.save_pretrained(model_dir)
    rows = cqa_rows()
    write_dataset(work / "data", "cqa", rows * 8, rows[:32], chat_template_hash(tokenizer))
    config = write_bot(work, model_dir)
    rates, medians = {}, {}
    for gpus in (1, args.gpus):
        rates[gpus], medians[gpus] = torchrun_rate(args, config, work, gpus)
    efficiency = rates[args.gpus] / (args.gpus * rates[1])
    print(f"\n{args.shape}, {args.method}, {args.distributed}, compile {args.compile}, "
          f"{args.batch_size} conversations per micro-batch and GPU\n\n| GPUs | real tokens/s | "
          "per GPU | scaling efficiency | median step tokens/s |\n|---|---|---|---|---|")
    print(f"| 1 | {rates[1]:,.0f} | {rates[1]:,.0f} | - | {medians[1]:,.0f} |\n| {args.gpus} | "
          f"{rates[args.gpus]:,.0f} | {rates[args.gpus] / args.gpus:,.0f} | {efficiency:.1%} | "
          f"{medians[args.gpus]:,.0f} |")
    if args.shape != "llama3-8b":  # the 8B base in float32 on a CPU takes minutes to load
        print(f"saved under {args.distributed}, loaded on CPU:",
              load_on_cpu(model_dir, work / f"data/adapters/{args.distributed}{args.gpus}",
                          args.method))
    print("gpu:", torch.cuda.get_device_name(), flush=True)


def torchrun_rate(args, config: Path, work: Path, gpus: int) -> tuple[float, float]:
    """Real tokens/s after warm-up, and the median step's, of ``chatbot train`` under torchrun
    on ``gpus`` GPUs."""
    name = f"{args.distributed}{gpus}"
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={gpus}",
               "-m", "app", "train",
               "--config", str(config), "--data", "cqa", "--name", name, "--quiet",
               "--max-steps", str(args.steps), "--batch-size", str(args.batch_size),
               "--eval-every", "1000", "--max-seq-len", str(MAX_LEN),
               "--method", args.method, "--distributed", args.distributed,
               "--compile", args.compile]
    if args.method == "full":
        command += ["--lr", "2e-5"]
    out = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if out.returncode:
        print(out.stderr[-3000:])
        raise SystemExit(f"torchrun with {gpus} GPU(s) failed")
    records = [json.loads(l) for l in
               (work / f"data/adapters/{name}/metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "train_loss" in r]
    first, last = steps[WARMUP - 1], steps[-1]
    rate = (last["tokens"] - first["tokens"]) / (last["elapsed_s"] - first["elapsed_s"])
    per_step = sorted((b["tokens"] - a["tokens"]) / (b["elapsed_s"] - a["elapsed_s"])
                      for a, b in zip(steps[WARMUP - 1:], steps[WARMUP:]))
    return rate, per_step[len(per_step) // 2]


def load_on_cpu(model_dir: Path, saved: Path, method: str) -> str:
    """The saved adapter (on its base) or full model loads in a process that sees no GPU."""
    load = (f"m = PeftModel.from_pretrained(M.from_pretrained('{model_dir}'), '{saved}')"
            if method == "lora" else f"m = M.from_pretrained('{saved}')")
    check = subprocess.run([sys.executable, "-c", (
        "from peft import PeftModel; from transformers import AutoModelForCausalLM as M; "
        f"{load}; print('yes,', next(m.parameters()).device)")],
        capture_output=True, text=True, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    return check.stdout.strip() or check.stderr[-500:]


def quality(args) -> None:
    """Fine-tune the real SmolLM2 on ConditionalQA and SGD; held-out loss before/after."""
    import shutil

    from transformers import AutoTokenizer

    from chatbot.models import _convert_gguf, chat_template_hash

    work = Path(tempfile.mkdtemp())
    model_dir = work / "smollm2"
    model_dir.mkdir()
    _convert_gguf(Path(args.gguf), model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    sets = {"conditionalqa": (cqa_rows(), conditionalqa(SHARED / "conditionalqa/questions.jsonl")),
            "sgd": (sgd(SHARED / "sgd/dialogues_train_sample.jsonl"),
                    sgd(SHARED / "sgd/dialogues_dev_sample.jsonl"))}
    config = write_bot(work, model_dir)
    print("\n| data | train/val/dev | val loss before | best val loss (step) | dev loss base "
          "| dev loss fine-tuned | seconds |\n|---|---|---|---|---|---|---|")
    for name, (rows, dev) in sets.items():
        cut = len(rows) * 9 // 10
        write_dataset(work / "data", name, rows[:cut], rows[cut:], chat_template_hash(tokenizer))
        started = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "app", "train", "--config", str(config),
                              "--data", name, "--name", name, "--quiet", "--epochs", "3",
                              "--eval-every", "20", "--max-seq-len", "2048"],
                             capture_output=True, text=True, cwd=ROOT)
        if out.returncode:
            print(f"| {name} | failed: {out.stderr.strip()[-300:]} |")
            continue
        summary = json.loads(out.stdout)
        seconds = time.perf_counter() - started
        adapter = work / "data/adapters" / name
        base, tuned = dev_loss(model_dir, None, dev, tokenizer), dev_loss(model_dir, adapter, dev,
                                                                            tokenizer)
        print(f"| {name} | {cut}/{len(rows) - cut}/{len(dev)} | {summary['val_loss_before']:.3f} "
              f"| {summary['best_val_loss']:.3f} ({summary['best_step']}) | {base:.3f} | "
              f"{tuned:.3f} | {seconds:.0f} |", flush=True)
        if os.environ.get("OUT"):
            shutil.copyfile(adapter / "loss.png", Path(os.environ["OUT"]) / f"loss_{name}.png")
            shutil.copyfile(adapter / "metrics.jsonl",
                            Path(os.environ["OUT"]) / f"metrics_{name}.jsonl")


def dev_loss(model_dir: Path, adapter: Path | None, dev: list, tokenizer) -> float:
    import torch
    from transformers import AutoModelForCausalLM

    from training.train.batches import eval_batches
    from training.train.model_setup import SupervisedLoss
    from training.train.tokenize import render_all

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).cuda()
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter))
    examples, _ = render_all(dev, tokenizer, "all_assistant", 2048, "dev")
    loss_module, total, count = SupervisedLoss(model).eval(), 0.0, 0
    with torch.no_grad():
        for batch in eval_batches(examples, 8192):
            total += loss_module(batch.to("cuda")).item()
            count += batch.supervised
    return total / count
