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

import queue
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from chatbot.adapters import AdapterManifest
from chatbot.answer_text import (HOLD_BACK_CHARS, before_stop, complete_words,
                                 generation_timings, milliseconds, reached_token_limit,
                                 settled)
from chatbot.attribution import Attribution, Attributor
from chatbot.errors import InputError, ModelError, PromptTooLong, TooManyNewTokens
from chatbot.filters import NamedFilter, run_filters
from chatbot.generate import GenerationSettings, Generator
from chatbot.logs import ConversationLog
from chatbot.prompts import FittedPrompt, load_template, prompt_within
from chatbot.retrieval_query import QueryPolicy, retrieval_query, rewrite_with
from chatbot.types import Message, Reply, hit_record
from chatbot.variants import Variant
from index.text import clean_text
from index.types import Hit


@dataclass(frozen=True)
class RetrievalPolicy:
    k: int = 4
    no_hits: str = "answer"
    """``answer`` without context, or ``refuse`` with ``refusal``, when no passage qualifies."""
    refusal: str = "The documents I have do not cover that question."
    query: QueryPolicy = QueryPolicy()
    """How a follow-up's search carries what it refers to (``chatbot.retrieval_query``)."""


@dataclass(frozen=True)
class AnswerPolicies:
    """What one answer takes from the engine, fixed when it starts, so the answer owns its run
    and an engine changed meanwhile (new settings, a new variant) affects only later answers."""

    generator_for: Callable[[Variant], Generator]
    search: Callable[[str, int], list[Hit]] | None
    log: ConversationLog | None
    filters: tuple[NamedFilter, ...]
    retrieval: RetrievalPolicy
    bot_name: str
    attributor: Attributor | None = None


CUT_SHORT_BY_SHUTDOWN = ("the server is shutting down, so this answer was cut short (it is "
                         "logged as interrupted); ask again once the server is back")
"""What the reader of an answer that ``Engine.stop_all`` stopped is told."""


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
            raise InputError(f"unknown variant {name!r}; variants: {', '.join(self.variants)}")
        return self.variants[name]

    def answer(self, session_id: str, message: str, variant: str | None = None,
               settings: GenerationSettings | None = None, history: Sequence[Message] = (),
               client: str | None = None) -> AnswerStream:
        """Start answering ``message`` after ``history``, the caller's conversation so far;
        iterate the result for text pieces. ``client`` is recorded on a session the log has
        not seen yet (``api`` for the API)."""
        chosen = self.variant(variant)
        question = self.check_message(message)
        stream = AnswerStream(self.policies(), session_id, question, chosen,
                              settings or self.settings, list(history), client)
        self._answering.add(stream)
        return stream

    def stop_all(self, timeout: float = 10.0) -> None:
        """Cancel every answer in progress and wait until each is logged: a server shutting
        down must not exit while an answer's thread is still writing it."""
        streams = list(self._answering)
        for stream in streams:
            stream.stop_for_shutdown()
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


class AnswerStream:
    """One answer, produced on its own thread: iterate for filtered text pieces, ``reply`` once
    finished, ``cancel()`` to stop it at the next token.

    The answer runs, is saved and is logged whether or not anyone reads it, so a closed browser
    tab or a client that walked away can never hold the model: the surfaces cancel on
    disconnect, and an answer whose pieces nobody takes for ``ABANDON_AFTER_S`` stops itself.
    The text shown so far is saved every ``SAVE_EVERY_S``, so a killed server loses at most
    that much; the turn ends ``complete``, ``interrupted`` (cancelled) or ``error``.
    """

    ABANDON_AFTER_S = 10.0
    SAVE_EVERY_S = 1.0

    def __init__(self, policies: AnswerPolicies, session_id: str, question: str,
                 variant: Variant, settings: GenerationSettings, history: list[Message],
                 client: str | None = None) -> None:
        self.policies, self.session_id, self.question = policies, session_id, question
        self.variant, self.settings, self.history = variant, settings, history
        self.client = client
        self.reply: Reply | None = None
        self._events: queue.Queue[tuple[str, object]] = queue.Queue()
        self._cancelled = threading.Event()
        self._finished = threading.Event()
        self.cut_short_by_shutdown = False
        """Stopped unfinished by ``Engine.stop_all``: its reader should say so."""
        self._last_read = time.monotonic()
        threading.Thread(target=self._produce, daemon=True,
                         name=f"answer-{session_id[-12:]}").start()

    def __iter__(self) -> Iterator[str]:
        try:
            while True:
                kind, value = self._events.get()
                self._last_read = time.monotonic()
                if kind == "piece":
                    yield value
                elif kind == "error":
                    raise value
                else:
                    return
        finally:  # the reader stopped early (closed, or gone): so does the answer
            self.cancel()

    def __enter__(self) -> AnswerStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.cancel()  # a no-op once the answer is complete

    def cancel(self) -> None:
        """Stop generating at the next token; never blocks (the UI calls it on its event loop)."""
        self._cancelled.set()

    def stop_for_shutdown(self) -> None:
        """``cancel()``, by a server that is shutting down rather than by the reader."""
        if not self._finished.is_set():
            self.cut_short_by_shutdown = True
        self.cancel()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def wait(self, timeout: float | None = None) -> Reply | None:
        """Block until the answer has ended and is logged; its reply (``None`` on timeout)."""
        self._finished.wait(timeout)
        return self.reply

    def result(self) -> Reply:
        for _ in self:
            pass
        return self.reply

    def _produce(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # handed to the reader, which raises it
            self._events.put(("error", exc))
        else:
            self._events.put(("done", None))
        finally:
            self._finished.set()

    def _run(self) -> None:
        policies = self.policies
        generator = policies.generator_for(self.variant)  # loads the model once, not timed
        if self.settings.max_new_tokens >= generator.context_window:
            raise TooManyNewTokens(self.settings.max_new_tokens, generator.context_window)
        started = time.perf_counter()
        query = self._query(generator)
        queried = time.perf_counter()
        hits = self._retrieve(query)
        retrieved = time.perf_counter()
        prompt = self._fit_prompt(generator, hits)
        messages, hits = prompt.messages, prompt.hits
        timings = {"query_ms": milliseconds(started, queried),
                   "retrieval_ms": milliseconds(queried, retrieved),
                   "prompt_ms": milliseconds(retrieved, time.perf_counter())}
        turn_id = self._log_start(messages, hits, query)
        refuse = self.variant.retrieval and not hits and policies.retrieval.no_hits == "refuse"
        raw, shown, status, first, error = "", "", "interrupted", None, None
        stopped = False
        saved_at = time.monotonic()
        held = policies.attributor is not None and policies.attributor.holds_answers
        try:
            adapter = self.variant.name if self.variant.adapter_dir else None
            pieces = iter([policies.retrieval.refusal]) if refuse else generator.stream(
                messages, self.settings, adapter, cancel=self._cancelled)
            stop, ready = self.settings.stop, ""
            hold_back = HOLD_BACK_CHARS if policies.filters else 0
            try:
                for piece in pieces:
                    if self._abandoned():
                        break
                    first = first or time.perf_counter()
                    raw += piece
                    visible, stopped = before_stop(raw, stop)
                    if (now_ready := complete_words(visible.lstrip())) != ready:
                        ready = now_ready  # filters rerun only once another word is complete
                        safe = settled(run_filters(policies.filters, ready)[0], hold_back)
                        if safe.startswith(shown) and len(safe) > len(shown):
                            if not held:  # else shown only once attribution allows it
                                self._events.put(("piece", safe[len(shown):]))
                            shown = safe
                    if time.monotonic() - saved_at >= self.SAVE_EVERY_S:
                        self._log_partial(turn_id, shown)
                        saved_at = time.monotonic()
                    if stopped:  # stop generating now, not at max_new_tokens
                        break
            finally:
                getattr(pieces, "close", lambda: None)()
            if not self.cancelled:
                status = "complete"
        except BaseException as exc:
            status, error = "error", str(exc) or type(exc).__name__
            raise
        finally:
            if status == "complete":
                answered = before_stop(raw, self.settings.stop, final=True)[0]
                text, changed = run_filters(policies.filters, answered.strip())
            else:  # what the reader was given, never text that was not yet shown
                text, changed = shown, run_filters(policies.filters, shown)[1]
            timings.update(generation_timings(started, first, raw, generator, refuse,
                                              self.settings.max_new_tokens))
            complete = status == "complete"
            if complete and not held and text.startswith(shown) and len(text) > len(shown):
                self._events.put(("piece", text[len(shown):]))  # all shown before attribution
            attribution = None
            if complete and not refuse and policies.attributor is not None:
                attribution, text = policies.attributor.judge(text, [h.text for h in hits])
                timings["attribution_ms"] = attribution.ms
            if complete and held and text:
                self._events.put(("piece", text))
            self.reply = Reply(text, messages, hits, self.variant.name, self.variant.model,
                               self.variant.adapter_id, timings, refuse, changed, turn_id,
                               0 if refuse else prompt.tokens, query, attribution,
                               complete and not refuse and not stopped and reached_token_limit(
                                   pieces, timings["tokens"], self.settings.max_new_tokens))
            self._log_finish(turn_id, text, timings, status, attribution, error)

    def _abandoned(self) -> bool:
        """Cancelled, or a piece has waited unread too long: nobody is reading any more."""
        if not self.cancelled and not self._events.empty() and (
                time.monotonic() - self._last_read > self.ABANDON_AFTER_S):
            self.cancel()
        return self.cancelled

    def _query(self, generator: Generator) -> str | None:
        """What this turn searches with (``None``: it does not search): the question, with
        what a follow-up refers to."""
        if not self.variant.retrieval or self.policies.search is None:
            return None
        return retrieval_query(self.policies.retrieval.query, self.question, self.history,
                               rewrite_with(generator, self._cancelled))

    def _fit_prompt(self, generator: Generator, hits: list[Hit]) -> FittedPrompt:
        """The prompt within the tokens the answer leaves. New tokens that leave no room for
        the prompt, or for any passage found, are refused: they would fit with fewer, and an
        answer without the sources found would look like one from the documents."""
        window, asked = generator.context_window, self.settings.max_new_tokens
        roomiest = min(self.settings.max_prompt_tokens or window, window - 1)
        template, bot_name = load_template(self.variant.template), self.policies.bot_name
        budget = min(window - asked, roomiest)
        try:
            prompt = prompt_within(template, self.question, hits, self.history,
                                   generator.count_tokens, budget, bot_name)
        except PromptTooLong as exc:
            if exc.tokens <= roomiest:
                raise TooManyNewTokens(asked, window) from None
            raise
        if hits and not prompt.hits and budget < roomiest and prompt_within(
                template, self.question, hits[:1], [], generator.count_tokens, roomiest,
                bot_name).hits:
            raise TooManyNewTokens(asked, window, passages=len(hits))
        return prompt

    def _retrieve(self, query: str | None) -> list[Hit]:
        if query is None:
            return []
        return self.policies.search(query, self.variant.k or self.policies.retrieval.k)

    def _log_start(self, messages: list[Message], hits: list[Hit],
                   query: str | None) -> int | None:
        log = self.policies.log
        if log is None:
            return None
        log.ensure_session(self.session_id, self.variant.name, self.client)
        log.add_turn(self.session_id, "user", self.question, variant=self.variant.name)
        return log.add_turn(
            self.session_id, "assistant", "", variant=self.variant.name,
            model_id=self.variant.model, adapter_id=self.variant.adapter_id,
            messages=[m.as_dict() for m in messages], hits=[hit_record(h) for h in hits],
            settings=self.settings.__dict__ | {"stop": list(self.settings.stop),
                                               "retrieval_query": query},
            status="pending")

    def _log_partial(self, turn_id: int | None, text: str) -> None:
        if self.policies.log is not None and turn_id is not None:
            self.policies.log.save_partial(turn_id, text)

    def _log_finish(self, turn_id: int | None, text: str, timings: dict, status: str,
                    attribution: Attribution | None, error: str | None) -> None:
        if self.policies.log is not None and turn_id is not None:
            self.policies.log.finish_turn(turn_id, text, timings, status,
                                          attribution and attribution.as_dict(), error)
