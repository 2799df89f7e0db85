"""The engine every surface calls: retrieve, render, generate, filter, log, time.

    stream = engine.answer(session_id, "How do I index my documents?", "prompt",
                           history=earlier_messages)
    for piece in stream:          # filtered text as it is generated
        print(piece, end="")
    reply = stream.reply          # text, exact messages, hits, variant, timings, token counts

The engine keeps no conversations: each surface owns its own (the web page's state, the
terminal session's list, the API client's messages) and passes it as ``history``.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence

from chatbot.adapters import AdapterManifest
from chatbot.answer_stream import AnswerPolicies, AnswerStream, RetrievalPolicy
from chatbot.attribution import Attributor
from chatbot.errors import InputError, ModelError
from chatbot.filters import NamedFilter
from chatbot.generate import GenerationSettings, Generator
from chatbot.logs import ConversationLog
from chatbot.types import Message
from chatbot.variants import Variant
from index.text import clean_text
from index.types import Hit


class Engine:
    """Answers questions for any number of sessions and variants on shared models."""

    def __init__(self, variants: dict[str, Variant], load_generator: Callable[..., Generator],
                 search: Callable[[str, int], list[Hit]] | None = None,
                 log: ConversationLog | None = None, filters: Sequence[NamedFilter] = (),
                 settings: GenerationSettings = GenerationSettings(),
                 retrieval: RetrievalPolicy = RetrievalPolicy(), max_message_chars: int = 8000,
                 default_variant: str | None = None, bot_name: str = "chatbot-builder",
                 attributor: Attributor | None = None,
                 find_variants: Callable[[], Mapping[str, Variant]] | None = None) -> None:
        self.variants = variants
        self.default_variant = default_variant or next(iter(variants))
        self.search = search
        self.log = log
        self.filters = list(filters)
        self.settings = settings
        self.retrieval = retrieval
        self.max_message_chars = max_message_chars
        self.bot_name = bot_name
        self.attributor = attributor  # which passages back each sentence; None: off
        self._find_variants = find_variants
        """The variants there are now (adapters registered while serving); see
        ``add_new_variants``."""
        self._load_generator = load_generator
        """``load_generator(model)`` runs a model here; ``load_generator(model, backend)``
        serves one from a named backend (a variant's ``backend``)."""
        self._generators: dict[tuple[str | None, str], Generator] = {}
        self._lock = threading.Lock()
        self._variants_lock = threading.Lock()
        """Serializes runtime changes to ``variants``; readers take the dict as it is."""
        self._answering: weakref.WeakSet[AnswerStream] = weakref.WeakSet()

    def generator_for(self, variant: Variant) -> Generator:
        """The variant's base model (per backend), loaded once and shared, with its adapter
        attached."""
        key = (variant.backend, variant.model)
        with self._lock:
            generator = self._generators.get(key)
            if generator is None:
                try:
                    generator = self._generators[key] = (
                        self._load_generator(variant.model) if variant.backend is None
                        else self._load_generator(variant.model, variant.backend))
                except ModelError as exc:
                    if variant.adapter_dir is None:
                        raise
                    raise ModelError(f"variant {variant.name!r} runs its adapter "
                                     f"({variant.adapter_dir}) on base model "
                                     f"{variant.model!r}, which can't be loaded: {exc}") from exc
        if variant.adapter_dir is not None:
            AdapterManifest.load(variant.adapter_dir).check_serves_on(
                variant.adapter_dir, variant.model, generator.fingerprint, generator.template_hash)
            generator.load_adapter(variant.name, variant.adapter_dir)
        return generator

    def add_variants(self, variants: dict[str, Variant]) -> list[str]:
        """Serve variants that appeared after start-up (an adapter trained from the web UI);
        names already served keep their variant. Returns the names added."""
        with self._variants_lock:
            new = {name: variant for name, variant in variants.items()
                   if name not in self.variants}
            if new:  # a new dict, so a request iterating the old one is not disturbed
                self.variants = {**self.variants, **new}
        return list(new)

    def add_new_variants(self) -> list[str]:
        """Serve the variants registered since the start (an adapter that ``chatbot train``
        or the Training tab wrote while serving). Returns the names added."""
        return self.add_variants(dict(self._find_variants())) if self._find_variants else []

    def remove_variant(self, name: str) -> Variant:
        """Stop serving a variant added at runtime (an unloaded adapter); answers already
        started keep it. The default variant stays: surfaces fall back to it."""
        with self._variants_lock:
            if name not in self.variants:
                raise InputError(f"unknown variant {name!r}; variants: {', '.join(self.variants)}")
            if name == self.default_variant:
                raise InputError(f"variant {name!r} is the default variant; it can't be removed")
            removed = self.variants[name]
            self.variants = {key: v for key, v in self.variants.items() if key != name}
        return removed

    def variant(self, name: str | None) -> Variant:
        name = name or self.default_variant
        if name not in self.variants:
            raise InputError(f"unknown variant {name!r}; variants: {', '.join(self.variants)} "
                             "(declare one under variants: in the config, or train an adapter "
                             f"of that name: chatbot train --name {name})")
        return self.variants[name]

    def answer(self, session_id: str, message: str, variant: str | None = None,
               settings: GenerationSettings | None = None, history: Sequence[Message] = (),
               client: str | None = None) -> AnswerStream:
        """Start answering ``message`` after ``history``, the caller's conversation so far;
        iterate the result for text pieces. ``client`` is recorded on a session the log has
        not seen yet (``api`` for the API); given, it may continue only a session it began:
        another's raises ``SessionNotYours`` from the stream, before anything is logged."""
        chosen = self.variant(variant)
        question = self.check_message(message)
        stream = AnswerStream(self.policies(), session_id, question, chosen,
                              settings or self.settings, list(history), client)
        self._answering.add(stream)
        return stream

    def stop_all(self, timeout: float = 10.0) -> None:
        """Cancel every answer in progress and wait until each is logged: a server shutting
        down must not exit while an answer's thread is still writing it. Their readers read on
        to the end, and are told why it came early."""
        self._stop_each(AnswerStream.stop_for_shutdown, timeout)

    def cancel_all(self, timeout: float = 10.0) -> None:
        """Cancel every answer in progress, whose reader has left (a Ctrl-C in the terminal),
        and wait until each is logged as far as its reader took it: a command that exits then
        must not leave a model thread running."""
        self._stop_each(AnswerStream.cancel, timeout)

    def _stop_each(self, stop: Callable[[AnswerStream], None], timeout: float) -> None:
        streams = list(self._answering)
        for stream in streams:
            stop(stream)
        deadline = time.monotonic() + timeout
        for stream in streams:
            stream.wait(max(0.0, deadline - time.monotonic()))

    def policies(self) -> AnswerPolicies:
        return AnswerPolicies(self.generator_for, self.search, self.log, tuple(self.filters),
                              self.retrieval, self.bot_name, self.attributor)

    def check_message(self, message: str) -> str:
        if not isinstance(message, str):
            raise InputError("the message must be text")
        cleaned = clean_text(message)
        if not cleaned.strip():
            raise InputError("the message is empty; type a question")
        if len(cleaned) > self.max_message_chars:
            raise InputError(f"the message has {len(cleaned):,} characters; the limit is "
                             f"{self.max_message_chars:,} (generation.max_message_chars)")
        return cleaned.strip()
