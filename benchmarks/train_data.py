"""Chat conversations from the shared benchmark sets, for the training benchmarks.

ConditionalQA questions become RAG turns (system prompt, numbered evidence passages, scenario
and question; the gold answer with its conditions is the assistant turn); SGD dialogues become
multi-turn conversations (USER -> user, SYSTEM -> assistant). Read by bench_train_cpu.py and
bench_train_gpu.py; ``write_dataset`` writes the dataset format ``chatbot train`` reads.
"""

from __future__ import annotations

import ast
import json
import os
import re
from pathlib import Path

from shared_data import shared_data



SHARED = Path(os.environ["TRAIN_BENCH_DATA"]) if os.environ.get("TRAIN_BENCH_DATA") \
    else shared_data()
RAG_SYSTEM = ("You are a helpful assistant for UK public services. Answer the question from the "
              "numbered sources; say when they do not cover it.")
DIALOGUE_SYSTEM = "You are a virtual assistant that books, finds and checks services for users."


def _strip_html(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", text)).strip()


def _field(row: dict, key: str):
    value = row[key]
    return ast.literal_eval(value) if isinstance(value, str) and value[:1] in "[{" else value


def conditionalqa(path: Path, limit: int | None = None) -> list[list[dict]]:
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line]
    conversations = []
    for row in rows[:limit]:
        evidence = [_strip_html(e) for e in _field(row, "evidences_html")][:4]
        sources = "\n".join(f"[{i}] {text}" for i, text in enumerate(evidence, 1))
        answers = _field(row, "answers")
        not_answerable = str(row["not_answerable"]) == "True"
        if not_answerable or not answers:
            answer = "The sources do not answer that question."
        else:
            parts = []
            for item in answers:
                conditions = [_strip_html(c) for c in item.get("conditions_html", [])]
                parts.append(item["answer"] + (f", if: {' '.join(conditions)}" if conditions else ""))
            answer = " / ".join(parts)
        user = f"Sources:\n{sources}\n\nScenario: {row['scenario']}\nQuestion: {row['question']}"
        conversations.append([{"role": "system", "content": RAG_SYSTEM},
                              {"role": "user", "content": user},
                              {"role": "assistant", "content": answer}])
    return conversations


def sgd(path: Path, limit: int | None = None) -> list[list[dict]]:
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line]
    conversations = []
    for row in rows[:limit]:
        messages = [{"role": "system", "content": DIALOGUE_SYSTEM}]
        for turn in row["turns"]:
            role = "user" if turn["speaker"] == "USER" else "assistant"
            if messages[-1]["role"] == role:  # merge repeated speakers into one turn
                messages[-1] = {"role": role,
                                "content": messages[-1]["content"] + " " + turn["utterance"]}
            else:
                messages.append({"role": role, "content": turn["utterance"]})
        conversations.append(messages)
    return conversations


def write_dataset(data_dir: Path, name: str, train: list, validation: list,
                  chat_template_hash: str) -> Path:
    """``<data_dir>/datasets/NAME`` in the format ``chatbot data build`` writes."""
    from datasets import Dataset, DatasetDict

    from chatbot.paths import DataPaths

    root = DataPaths(data_dir).dataset(name)
    DatasetDict({split: Dataset.from_dict({
        "conversation_id": [f"{split}-{i}" for i in range(len(rows))], "messages": rows})
        for split, rows in (("train", train), ("validation", validation))}).save_to_disk(
        str(root / "dataset"))
    (root / "manifest.json").write_text(json.dumps({
        "name": name, "chat_template_hash": chat_template_hash, "template": None,
        "template_hash": None, "counts": {"train": len(train), "validation": len(validation)}}))
    return root


def count_real_tokens(trainer, tokens: list[int]) -> None:
    """Wrap a TRL trainer's collator so each batch's real (non-pad) token count is appended to
    ``tokens``: tokens/s then means the same for TRL as for ours."""
    collate = trainer.data_collator

    def counting(features):
        batch = collate(features)
        mask = batch.get("attention_mask")
        tokens.append(int(mask.sum()) if mask is not None else int(batch["input_ids"].numel()))
        return batch

    trainer.data_collator = counting
