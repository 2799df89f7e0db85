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
Shared data: $TRAIN_BENCH_DATA (default ../shared/data).
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

from train_data import (SHARED, conditionalqa, count_real_tokens, sgd,  # noqa: E402
                        write_dataset)

PEAK_BF16 = {"H100": 989e12, "H200": 989e12}  # dense bf16 tensor-core peak (SXM)
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
TIMED = int(os.environ.get("BENCH_TIMED_STEPS", "12"))
DEVICE = os.environ.get("BENCH_DEVICE", "cuda")  # "cpu" only to dry-run this script


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
        rates[gpus] = (last["tokens"] - first["tokens"]) / (last["elapsed_s"] - first["elapsed_s"])
        per_step = sorted((b["tokens"] - a["tokens"]) / (b["elapsed_s"] - a["elapsed_s"])
                          for a, b in zip(steps[WARMUP - 1:], steps[WARMUP:]))
        medians[gpus] = per_step[len(per_step) // 2]
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
