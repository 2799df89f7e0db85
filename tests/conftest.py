"""Shared fixtures: a tiny chat model built from a config (no download) and isolated data dirs."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from chatbot.generate import GenerationSettings
from chatbot.types import Message


@pytest.fixture(autouse=True)
def isolated_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own data dir; the model cache is shared (converted once)."""
    data_dir = tmp_path / "data"
    monkeypatch.setenv("CHATBOT_DATA_DIR", str(data_dir))
    monkeypatch.delenv("CHATBOT_CONFIG", raising=False)
    monkeypatch.delenv("CHATBOT_API_KEY", raising=False)
    return data_dir


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer Llama with random weights and SmolLM2's tokenizer and chat template."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from chatbot.config import EMBEDDED_CHAT_MODEL
    from chatbot.models import resolve_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_model(EMBEDDED_CHAT_MODEL))
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=1024, tie_word_embeddings=True,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    target = tmp_path_factory.mktemp("tiny-chat-model")
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


@pytest.fixture
def tiny_config(tmp_path: Path, tiny_model_dir: Path) -> Path:
    """A bot config on the tiny model, its data dir under tmp_path."""
    config = {"data_dir": str(tmp_path / "data"),
              "models": {"chat": str(tiny_model_dir)},
              "generation": {"max_new_tokens": 8},
              "index": {"paths": [str(tmp_path / "docs")]}}
    path = tmp_path / "bot.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


class EchoGenerator:
    """A generator that answers by echoing the question word by word: engine tests in ms.

    Clear ``flowing`` to hold the answer after its first word (a slow model, mid-answer) until
    it is set again or the stream is cancelled.
    """

    model_id = "echo"
    context_window = 1000
    fingerprint = "echo-fingerprint"
    template_hash = "echo-template"

    def __init__(self) -> None:
        self.adapters: dict[str, str] = {}
        self.calls: list[tuple[list[Message], str | None]] = []
        self.flowing = threading.Event()
        self.flowing.set()

    def load_adapter(self, name: str, path) -> None:
        self.adapters[name] = str(path)

    def count_tokens(self, messages: list[Message]) -> int:
        return sum(len(m.content.split()) + 2 for m in messages)

    def count_text(self, text: str) -> int:
        return len(text.split())

    def stream(self, messages: list[Message], settings: GenerationSettings,
               adapter: str | None = None,
               cancel: threading.Event | None = None) -> Iterator[str]:
        self.calls.append((messages, adapter))
        question = messages[-1].content.rsplit("Question:", 1)[-1].strip()
        for number, word in enumerate(question.split()[: settings.max_new_tokens]):
            while number and not self.flowing.wait(0.01):
                if cancel is not None and cancel.is_set():
                    return
            yield word + " "


@pytest.fixture
def echo() -> EchoGenerator:
    return EchoGenerator()
