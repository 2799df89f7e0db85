"""SFT adapter vs SFT + DPO and SFT + KTO on ConditionalQA, SmolLM2-135M on the CPU.

    .venv/bin/python benchmarks/bench_preference.py [--work /tmp/bench-preference] \
        [--sft-train 48 --sft-steps 6 --pref-questions 16 --pref-steps 4 --dev 60 --threads 1]

The defaults fit a shared 2-core CPU in about 20 minutes: a smoke-sized run, not a tuned one.

1. SFT: ``finetune`` on ConditionalQA training questions (``train_qa_sample.jsonl``, prompts
   from ``train_data.conditionalqa``: the gold evidence as numbered sources; target: the short
   gold answer(s)).
2. The SFT adapter answers further training questions (greedy). Simulated review: DPO pairs
   take the gold answer as chosen (a reviewer's correction) and the SFT answer as rejected where
   it is wrong; KTO rows label the SFT answers desirable where they match the gold (thumbs up)
   and undesirable otherwise (thumbs down), plus the gold answers as desirable. An answer
   "matches" at token F1 >= 0.5.
3. ``train_preference`` DPO and KTO, both continuing the SFT adapter.
4. The three adapters answer the dev questions (``questions.jsonl``, same prompt shape); token
   F1 and exact match, the differences paired per question with bootstrap 95% intervals.

Prints the timings, the data counts and a markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout
from train_data import SHARED, conditionalqa  # noqa: E402

DATA = SHARED / "conditionalqa"
UNANSWERABLE = "The sources do not answer that question."
MATCH_F1 = 0.5


def gold_answers(row: dict) -> list[str]:
    """The short gold answers of a ConditionalQA row (conditions left out)."""
    answers = [item["answer"] for item in row["answers"]]
    return answers if answers and str(row["not_answerable"]) != "True" else [UNANSWERABLE]


def questions(path: Path, start: int, count: int) -> list[tuple[list[dict], list[str]]]:
    """(prompt messages, gold answers) for rows ``start .. start+count`` of ``path``."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line]
    prompts = conditionalqa(path)
    return [(prompts[i][:2], gold_answers(rows[i]))
            for i in range(start, min(start + count, len(rows)))]


def answer_all(model_dir: str, adapter: Path, items, max_new_tokens: int, batch: int = 8
               ) -> list[str]:
    """Greedy answers of the base model with ``adapter`` merged, in left-padded batches."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload().eval()
    answers = []
    for start in range(0, len(items), batch):
        texts = [tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
                 for prompt, _ in items[start:start + batch]]
        inputs = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id)
        answers += tokenizer.batch_decode(out[:, inputs["input_ids"].shape[1]:],
                                          skip_special_tokens=True)
    return [answer.strip() for answer in answers]


def write_preference_dataset(data_dir: Path, name: str, model_dir: str, items, answers,
                             validation_share: float = 0.2) -> dict:
    """Simulated review of the SFT answers -> a preference dataset; returns its counts."""
    from transformers import AutoTokenizer

    from chatbot.models import chat_template_hash
    from chatbot.paths import DataPaths
    from training.data.dataset import DatasetManifest
    from training.data.preference import DPOPair, KTORow, save_preference_rows
    from training.eval.metrics import token_f1

    cut = int(len(items) * (1 - validation_share))
    kto, dpo = {}, {}
    for split, part in (("train", slice(0, cut)), ("validation", slice(cut, None))):
        kto[split], dpo[split] = [], []
        for (prompt, gold), answer in zip(items[part], answers[part]):
            right = token_f1(answer, gold) >= MATCH_F1
            kto[split] += [KTORow(tuple(prompt), answer, right),
                           KTORow(tuple(prompt), " / ".join(gold), True)]
            if not right:
                dpo[split].append(DPOPair(tuple(prompt), " / ".join(gold), answer))
    root = DataPaths(data_dir).dataset(name)
    root.mkdir(parents=True, exist_ok=True)
    files = save_preference_rows(root, kto, dpo)
    counts = {kind: {split: len(rows[split]) for split in rows}
              for kind, rows in (("kto", kto), ("dpo", dpo))}
    counts["sft_right"] = sum(r.label for r in kto["train"] + kto["validation"]) - len(items)
    DatasetManifest(name=name, kind="preference", files=files, counts=counts,
                    chat_template_hash=chat_template_hash(AutoTokenizer.from_pretrained(model_dir))
                    ).save(root)
    return counts


def train_sft(data_dir: Path, model: str, args) -> Path:
    from transformers import AutoTokenizer

    from chatbot.models import chat_template_hash, resolve_model
    from train_data import write_dataset
    from training.train.finetune import FinetuneRequest, finetune
    from training.train.loop import LoopSettings

    items = questions(DATA / "train_qa_sample.jsonl", 0, args.sft_train)
    rows = [prompt + [{"role": "assistant", "content": " / ".join(gold)}]
            for prompt, gold in items]
    cut = len(rows) - max(8, len(rows) // 10)
    write_dataset(data_dir, "cqa-sft", rows[:cut], rows[cut:],
                  chat_template_hash(AutoTokenizer.from_pretrained(resolve_model(model))))
    loop = LoopSettings(max_steps=args.sft_steps, learning_rate=1e-3, batch_size=4,
                        eval_every=args.sft_steps, patience=None, warmup=0.1)
    result = finetune(FinetuneRequest(data_dir=data_dir, dataset="cqa-sft", name="sft",
                                      base_model=model, loop=loop, max_seq_len=args.max_len,
                                      device="cpu", threads=args.threads), progress=False)
    return Path(result.adapter)


def train_on_preferences(data_dir: Path, model: str, objective: str, args) -> dict:
    from training.train.finetune import FinetuneRequest
    from training.train.loop import LoopSettings
    from training.train.preference import PreferenceRequest, train_preference

    loop = LoopSettings(max_steps=args.pref_steps, learning_rate=args.pref_lr, batch_size=4,
                        eval_every=max(1, args.pref_steps // 2), patience=None, warmup=0.1)
    run = FinetuneRequest(data_dir=data_dir, dataset="cqa-pref", name=f"sft-{objective}",
                          base_model=model, loop=loop, max_seq_len=args.max_len, device="cpu",
                          threads=args.threads)
    return train_preference(PreferenceRequest(run, objective, args.beta, from_adapter="sft"),
                            progress=False).as_dict()


def scores(answers: list[str], items) -> dict[str, list[float]]:
    from training.eval.metrics import exact_match, token_f1

    return {"token_f1": [token_f1(a, gold) for a, (_, gold) in zip(answers, items)],
            "exact_match": [exact_match(a, gold) for a, (_, gold) in zip(answers, items)]}


class Laps:
    """Wall and CPU seconds of each phase: on a shared machine the two differ."""

    def __init__(self) -> None:
        self.seconds: dict[str, tuple[int, int]] = {}
        self._clock, self._cpu = time.perf_counter(), time.process_time()

    def lap(self, name: str) -> None:
        self.seconds[name] = (round(time.perf_counter() - self._clock),
                              round(time.process_time() - self._cpu))
        self._clock, self._cpu = time.perf_counter(), time.process_time()
        print(f"{name}: {self.seconds[name][0]} s wall, {self.seconds[name][1]} s CPU", flush=True)

    def totals(self) -> str:
        return (f"{sum(w for w, _ in self.seconds.values())} s wall, "
                f"{sum(c for _, c in self.seconds.values())} s CPU")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench-preference"))
    parser.add_argument("--model", default="embedded:smollm2-135m-instruct")
    parser.add_argument("--sft-train", type=int, default=48)
    parser.add_argument("--sft-steps", type=int, default=6)
    parser.add_argument("--pref-questions", type=int, default=16)
    parser.add_argument("--pref-steps", type=int, default=4)
    parser.add_argument("--pref-lr", type=float, default=2e-4)
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--dev", type=int, default=60)
    parser.add_argument("--max-len", type=int, default=320)
    parser.add_argument("--max-new-tokens", type=int, default=12)
    parser.add_argument("--threads", type=int, default=1)
    return parser.parse_args()


def print_table(metrics: dict[str, dict[str, list[float]]]) -> None:
    """Each variant's token F1 and exact match, and its paired difference from SFT."""
    from training.eval.paired_stats import compare_paired

    def interval(i) -> str:
        return f"{i.mean:.3f} [{i.low:.3f}, {i.high:.3f}]"

    def signed(i) -> str:
        return f"{i.mean:+.3f} [{i.low:+.3f}, {i.high:+.3f}]"

    print("| variant | token F1 [95% CI] | exact match [95% CI] | F1 diff vs SFT [95% CI] | "
          "EM diff vs SFT [95% CI] | F1 W/T/L |\n|---|---|---|---|---|---|")
    for name in metrics:
        f1 = compare_paired(metrics["SFT"]["token_f1"], metrics[name]["token_f1"])
        em = compare_paired(metrics["SFT"]["exact_match"], metrics[name]["exact_match"])
        diffs = ("", "", "") if name == "SFT" else (
            signed(f1.difference), signed(em.difference), f"{f1.wins}/{f1.ties}/{f1.losses}")
        print(f"| {name} | {interval(f1.candidate)} | {interval(em.candidate)} | "
              + " | ".join(diffs) + " |")


def main() -> None:
    args = parse_args()
    import shutil

    import torch

    from chatbot.models import resolve_model

    torch.set_num_threads(args.threads)
    shutil.rmtree(args.work, ignore_errors=True)
    data_dir, model_dir = args.work / "data", resolve_model(args.model)
    laps = Laps()
    sft = train_sft(data_dir, args.model, args)
    laps.lap("SFT training")
    review = questions(DATA / "train_qa_sample.jsonl", args.sft_train, args.pref_questions)
    counts = write_preference_dataset(data_dir, "cqa-pref", model_dir, review, answer_all(
        model_dir, sft, review, args.max_new_tokens))
    print(json.dumps(counts))
    laps.lap("SFT answers to the review questions")
    results = {objective: train_on_preferences(data_dir, args.model, objective, args)
               for objective in ("dpo", "kto")}
    for objective, result in results.items():
        print(objective, json.dumps({k: result[k] for k in ("steps", "best_step", "validation")}))
    laps.lap("DPO + KTO training")
    dev = questions(DATA / "questions.jsonl", 0, args.dev)
    adapters = {"SFT": sft, "SFT + DPO": data_dir / "adapters/sft-dpo",
                "SFT + KTO": data_dir / "adapters/sft-kto"}
    metrics = {name: scores(answer_all(model_dir, path, dev, args.max_new_tokens), dev)
               for name, path in adapters.items()}
    laps.lap("dev answers (3 adapters)")
    print(f"\n{len(dev)} dev questions; SFT on {args.sft_train} questions ({args.sft_steps} "
          f"steps); {counts['dpo']['train']} DPO pairs / {counts['kto']['train']} KTO rows from "
          f"{len(review)} review questions ({args.pref_steps} steps, beta {args.beta}, lr "
          f"{args.pref_lr:g}); total {laps.totals()}\n")
    print_table(metrics)


if __name__ == "__main__":
    main()
