"""Tiny training assets for tests: a 2-layer Llama with SmolLM2's tokenizer and a small dataset.

The dataset is written in the on-disk format of ``chatbot data build`` (see the dataset contract):
``<data_dir>/datasets/NAME/dataset`` (train/validation splits of ``messages``) + ``manifest.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

SYSTEM = "You answer questions about the Zorb project from the numbered sources."
FACTS = [
    ("What colour is the Zorb logo?", "The Zorb logo is teal."),
    ("Who maintains Zorb?", "Zorb is maintained by Ada Quill."),
    ("Which port does Zorb use?", "Zorb listens on port 4242."),
    ("What language is Zorb written in?", "Zorb is written in OCaml."),
]


def conversation(question: str, answer: str, source: str = "[1] zorb.md") -> list[dict]:
    return [{"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"Sources:\n{source}\n\nQuestion: {question}"},
            {"role": "assistant", "content": answer}]


def tokenizer_dir() -> str:
    from chatbot.models import resolve_model

    return resolve_model("embedded:smollm2-135m-instruct")


def make_tiny_model(folder: Path, seed: int = 0) -> Path:
    """A random 2-layer Llama (hidden 64) with SmolLM2's tokenizer and chat template."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir())
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=512, tie_word_embeddings=True,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def write_dataset(data_dir: Path, name: str, model_dir: Path, train: list[list[dict]],
                  validation: list[list[dict]], **manifest_overrides) -> Path:
    """A dataset directory built for ``model_dir``'s chat template and fingerprint."""
    from datasets import Dataset, DatasetDict
    from transformers import AutoTokenizer

    from chatbot.models import chat_template_hash, model_fingerprint

    root = Path(data_dir) / "datasets" / name
    splits = {split: Dataset.from_dict({
        "conversation_id": [f"{split}-{i}" for i in range(len(rows))],
        "messages": rows}) for split, rows in (("train", train), ("validation", validation))}
    DatasetDict(splits).save_to_disk(str(root / "dataset"))
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    manifest = {"name": name, "chat_model": str(model_dir),
                "chat_model_fingerprint": model_fingerprint(model_dir),
                "chat_template_hash": chat_template_hash(tokenizer),
                "template": None, "template_hash": None, "sha256": "0" * 64,
                "counts": {"train": len(train), "validation": len(validation)},
                **manifest_overrides}
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return root


def fact_dataset(data_dir: Path, model_dir: Path, name: str = "facts", repeat: int = 4,
                 facts: list[tuple[str, str]] = FACTS) -> Path:
    rows = [conversation(q, a) for q, a in facts]
    return write_dataset(data_dir, name, model_dir, rows * repeat, rows[:2])


def greedy_answer(model, tokenizer, question: str, max_new_tokens: int = 16) -> str:
    import torch

    messages = conversation(question, "")[:2]
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                        return_tensors="pt", return_dict=True)["input_ids"]
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=max_new_tokens, do_sample=False,
                             eos_token_id=tokenizer.eos_token_id,
                             pad_token_id=tokenizer.eos_token_id)
    return tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip()
