"""Text generation behind a small protocol, so the engine never touches transformers itself.

``TransformersGenerator`` holds one copy of a causal LM; LoRA adapters are loaded onto that one
base model with peft and switched per request, so a fine-tuned variant costs no second copy of
the base weights. A lock serializes generation: one model serves many users safely.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from chatbot.adapters import check_lora_files, peft_notice_muted
from chatbot.errors import GenerationFailed, InputError, ModelBusy, ModelError
from chatbot.models import chat_template_hash, model_fingerprint
from chatbot.penalties import penalizes, penalties_processors
from chatbot.types import Message


GREEDY_BELOW = 1e-5
"""Temperatures below this decode greedily (as vLLM does): logits divided by a temperature near
float32's smallest overflow to inf, and sampling from them fails."""


def chat_ids(tokenizer, messages: list[dict], add_generation_prompt: bool = True) -> list[int]:
    """``messages`` as the model's chat template renders them, in token ids. A conversation the
    template refuses with its ``raise_exception`` (Mistral's and Llama 2's want user and
    assistant turns in alternation) is the sender's to change: an ``InputError`` saying what
    the template said. A broken template (its syntax, a missing variable) stays the server's."""
    from jinja2 import TemplateError

    try:
        return tokenizer.apply_chat_template(messages, add_generation_prompt=add_generation_prompt,
                                             tokenize=True, return_dict=False)
    except TemplateError as exc:
        if type(exc) is not TemplateError:  # TemplateSyntaxError, UndefinedError...
            raise
        raise InputError(f"the model's chat template refuses this conversation: {exc}") from None


@dataclass(frozen=True)
class GenerationSettings:
    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    """OpenAI's penalties on tokens the answer has used (``chatbot.penalties``); 0: none."""
    stop: tuple[str, ...] = field(default_factory=tuple)
    max_prompt_tokens: int | None = None
    """Most tokens a prompt may hold; ``None``: the model's window less ``max_new_tokens``."""
    seed: int | None = None
    """Seeds the sampling of this answer alone, so asking again gives the same answer; sent
    on to a remote backend. ``None``: a different draw each time. Greedy decoding needs none."""

    @property
    def greedy(self) -> bool:
        return self.temperature < GREEDY_BELOW


class Generator(Protocol):
    model_id: str
    context_window: int
    fingerprint: str
    """Identity of the base weights; adapters record it (chatbot.models.model_fingerprint)."""
    template_hash: str
    """Hash of the tokenizer's chat template (chatbot.models.chat_template_hash)."""

    def load_adapter(self, name: str, path: str | Path) -> None: ...

    def count_tokens(self, messages: list[Message]) -> int: ...

    def count_text(self, text: str) -> int: ...

    def stream(self, messages: list[Message], settings: GenerationSettings,
               adapter: str | None = None,
               cancel: threading.Event | None = None) -> Iterator[str]:
        """Text pieces as they are decoded; ends early once ``cancel`` is set."""


def pick_dtype(device: str, dtype: str):
    """float32 on CPU unless asked otherwise: bf16 without CPU support is ~6x slower."""
    import torch

    if dtype != "auto":
        return getattr(torch, dtype)
    if device == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def pick_device(device: str) -> str:
    import torch

    if device != "auto":
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


class TransformersGenerator:
    """A transformers causal LM with streaming, switchable LoRA adapters and a lock, which an
    answer waits for at most ``queue_timeout_s`` (``models.queue_timeout_s``)."""

    def __init__(self, model_path: str, model_id: str, device: str = "auto",
                 dtype: str = "auto", threads: int | None = None,
                 queue_timeout_s: float = 120.0) -> None:
        import torch
        from safetensors import SafetensorError
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        if threads:
            torch.set_num_threads(threads)
        self.model_id = model_id
        self.model_path = model_path
        self.device = pick_device(device)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(model_path)
            self.model = AutoModelForCausalLM.from_pretrained(
                model_path, dtype=pick_dtype(self.device, dtype)).to(self.device).eval()
        except (OSError, ValueError) as exc:
            raise ModelError(f"could not load chat model {model_id!r} from {model_path}: {exc}; "
                             "check models.chat in the config, then run "
                             "`chatbot models prepare`") from exc
        except SafetensorError as exc:  # a weights file cut short
            raise ModelError(f"could not load chat model {model_id!r} from {model_path}: its "
                             f"safetensors weights cannot be read ({exc}); the folder was saved "
                             "or copied only in part: save or copy it again") from exc
        if not self.tokenizer.chat_template:
            raise ModelError(f"chat model {model_id!r} has no chat template; use an "
                             "instruction-tuned model")
        self.context_window = int(getattr(self.model.config, "max_position_embeddings", 2048))
        self.fingerprint = model_fingerprint(model_path)
        self.template_hash = chat_template_hash(self.tokenizer)
        self.adapters: dict[str, str] = {}
        """Variant name -> adapter folder, of the adapters loaded."""
        self._peft_names: dict[str, str] = {}
        """Variant name -> the name peft loaded it under: a torch module name, which can't
        hold the dot of a variant such as ``support-v1.1``."""
        self._lock = threading.Lock()
        self.queue_timeout_s = queue_timeout_s

    def load_adapter(self, name: str, path: str | Path) -> None:
        """Attach a LoRA adapter under ``name``; the base weights are shared, not copied."""
        from peft import PeftModel

        with self._lock:
            if name in self.adapters:
                return
            check_lora_files(Path(path))
            peft_name = f"adapter{len(self.adapters)}"
            try:
                with peft_notice_muted():
                    if not self.adapters:
                        self.model = PeftModel.from_pretrained(self.model, str(path),
                                                               adapter_name=peft_name)
                    else:
                        self.model.load_adapter(str(path), adapter_name=peft_name)
            except (OSError, ValueError) as exc:
                raise ModelError(f"could not load adapter {name!r} from {path}: {exc}") from exc
            self.model.eval()
            self.adapters[name] = str(path)
            self._peft_names[name] = peft_name

    def peft_name(self, adapter: str) -> str:
        return self._peft_names[adapter]

    def encode(self, messages: list[Message]) -> list[int]:
        return chat_ids(self.tokenizer, [m.as_dict() for m in messages])

    def count_tokens(self, messages: list[Message]) -> int:
        return len(self.encode(messages))

    def count_text(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def stream(self, messages: list[Message], settings: GenerationSettings,
               adapter: str | None = None,
               cancel: threading.Event | None = None) -> Iterator[str]:
        """Yield text pieces as they are decoded; closing the iteration or setting ``cancel``
        stops generation at the next token and frees the model."""
        import torch
        from transformers import StoppingCriteria, TextIteratorStreamer

        reader_done = threading.Event()

        def should_stop() -> bool:
            return reader_done.is_set() or (cancel is not None and cancel.is_set())

        class StopWhenAsked(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs) -> bool:
                return should_stop()

        ids = torch.tensor([self.encode(messages)], device=self.device)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True,
                                        skip_special_tokens=True)
        kwargs = dict(input_ids=ids, attention_mask=torch.ones_like(ids), streamer=streamer,
                      max_new_tokens=settings.max_new_tokens,
                      repetition_penalty=settings.repetition_penalty,
                      stopping_criteria=[StopWhenAsked()],
                      pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id)
        if not settings.greedy:
            kwargs.update(do_sample=True, temperature=settings.temperature, top_p=settings.top_p)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if settings.stop:
            kwargs.update(stop_strings=list(settings.stop), tokenizer=self.tokenizer)
        if penalizes(settings):
            kwargs["logits_processor"] = penalties_processors(ids.shape[1], settings)
        errors: list[BaseException] = []
        worker = threading.Thread(target=self._generate, daemon=True,
                                  args=(kwargs, streamer, errors, adapter, should_stop,
                                        None if settings.greedy else settings.seed))
        worker.start()
        try:
            yield from streamer
        finally:
            reader_done.set()  # the reader is done (or gone): stop at the next token,
            worker.join()  # and return only then, so no torch thread outlives the answer
        if errors and isinstance(errors[0], ModelBusy):
            raise errors[0]
        if errors:
            raise GenerationFailed(f"generation failed in {self.model_id}: {errors[0]}") from errors[0]

    def _select_adapter(self, adapter: str | None) -> None:
        if not self.adapters:
            if adapter:
                raise ModelError(f"adapter {adapter!r} is not loaded")
            return
        if adapter:
            self.model.set_adapter(self.peft_name(adapter))
            self.model.base_model.enable_adapter_layers()
        else:
            self.model.base_model.disable_adapter_layers()

    def _generate(self, kwargs: dict, streamer, errors: list[BaseException],
                  adapter: str | None, should_stop: Callable[[], bool],
                  seed: int | None) -> None:
        """Wait for the model (giving up once cancelled, or as busy after ``queue_timeout_s``),
        then generate into ``streamer``."""
        import torch

        try:
            deadline = time.monotonic() + self.queue_timeout_s
            while not self._lock.acquire(timeout=0.05):
                if should_stop():
                    return
                if time.monotonic() >= deadline:
                    raise ModelBusy(f"the model had no free turn for {self.queue_timeout_s:g} s: "
                                    "it answers one question at a time (models.max_batch 1) and "
                                    "others were under way; ask again later, or raise "
                                    "models.max_batch or models.queue_timeout_s")
            try:
                if should_stop():  # cancelled while it waited
                    return
                self._select_adapter(adapter)
                with _seeded(seed), torch.inference_mode():
                    self.model.generate(**kwargs)
            finally:
                self._lock.release()
        except Exception as exc:  # handed to the reading thread, which raises it
            errors.append(exc)
        finally:
            streamer.end()



@contextlib.contextmanager
def _seeded(seed: int | None) -> Iterator[None]:
    """Torch's generators seeded with ``seed`` for one answer and put back after it, so a
    request's seed (a stranger's too) never decides the draws of later unseeded answers; the
    model lock keeps other answers off the generators meanwhile."""
    if seed is None:
        yield
        return
    import torch

    with torch.random.fork_rng():
        torch.manual_seed(seed % 2**64)
        yield
