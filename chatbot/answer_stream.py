"""One answer's run, on its own thread: retrieve, fit the prompt, generate, filter, attribute,
log; the reader iterates the filtered text as it comes (``Engine.answer`` starts one).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from chatbot.answer_text import (HOLD_BACK_CHARS, before_stop, complete_words, generation_timings,
                                 milliseconds, reached_token_limit, settled)
from chatbot.attribution import Attribution, Attributor
from chatbot.errors import InputError, PromptTooLong, SessionNotYours, TooManyNewTokens
from chatbot.filters import NamedFilter, run_filters
from chatbot.generate import GenerationSettings, Generator
from chatbot.logs import ConversationLog
from chatbot.prompts import FittedPrompt, load_template, prompt_within
from chatbot.remote_connection import hung_up_on_cancel
from chatbot.retrieval_query import QueryPolicy, retrieval_query, rewrite_with
from chatbot.types import Message, Reply, hit_record
from chatbot.variants import Variant
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


@dataclass
class _Turn:
    """One answer between its stages: what was sent, and what has come back so far."""

    id: int | None
    generator: Generator
    query: str | None
    prompt: FittedPrompt
    refuse: bool
    started: float
    timings: dict
    pieces: Iterator[str] | None = None
    raw: str = ""
    shown: str = ""
    first: float | None = None
    stopped: bool = False


CUT_SHORT_BY_SHUTDOWN = ("the server is shutting down, so this answer was cut short (it is "
                         "logged as interrupted); ask again once the server is back")
"""What the reader of an answer that ``Engine.stop_all`` stopped is told."""


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
    STOP_WAIT_S = 10.0

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
        self._taken = 0
        """Characters of the answer its reader has taken: an answer cut short is logged as far
        as that, not with the pieces still queued unread."""
        threading.Thread(target=self._produce, daemon=True,
                         name=f"answer-{session_id[-12:]}").start()

    def __iter__(self) -> Iterator[str]:
        try:
            while True:
                kind, value = self._events.get()
                self._last_read = time.monotonic()
                if kind == "piece":
                    self._taken += len(value)
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
        """Read the answer to its end. A Ctrl-C while waiting stops the answer and comes back
        once it has ended: a command that then exits must not leave a model thread running."""
        try:
            for _ in self:
                pass
        except KeyboardInterrupt:
            self.wait(self.STOP_WAIT_S)
            raise
        return self.reply

    def _produce(self) -> None:
        try:
            with hung_up_on_cancel(self._cancelled):  # a remote's requests, from the first
                self._run()
        except BaseException as exc:  # handed to the reader, which raises it
            self._events.put(("error", exc))
        else:
            self._events.put(("done", None))
        finally:
            self._finished.set()

    def _run(self) -> None:
        turn = self._prepare()
        status, error = "interrupted", None
        try:
            self._generate(turn)
            if not self.cancelled:
                status = "complete"
        except BaseException as exc:
            status, error = "error", str(exc) or type(exc).__name__
            raise
        finally:
            self._finish(turn, status, error)

    def _prepare(self) -> _Turn:
        """Search, fit the prompt and log the question: all that comes before the first token.
        A failure on the way (the model or its tokenizer, a follow-up's rewrite, the search)
        is logged with the question, as later ones are; a request to fix (``InputError``: too
        many new tokens, a prompt too long) is refused without a turn."""
        try:
            generator, query, prompt, started, timings = self._prompt()
        except InputError:
            raise
        except Exception as exc:
            self._log_finish(self._log_start([], [], None), "", {}, "error", None,
                             str(exc) or type(exc).__name__)
            raise
        turn_id = self._log_start(prompt.messages, prompt.hits, query)
        refuse = (self.variant.retrieval and not prompt.hits
                  and self.policies.retrieval.no_hits == "refuse")
        return _Turn(turn_id, generator, query, prompt, refuse, started, timings)

    def _prompt(self) -> tuple[Generator, str | None, FittedPrompt, float, dict]:
        """(generator, search query, fitted prompt, start time, timings) of the answer."""
        generator = self.policies.generator_for(self.variant)  # loads the model once, not timed
        if self.settings.max_new_tokens >= generator.context_window:
            raise TooManyNewTokens(self.settings.max_new_tokens, generator.context_window)
        started = time.perf_counter()
        query = self._query(generator)
        queried = time.perf_counter()
        hits = self._retrieve(query)
        retrieved = time.perf_counter()
        prompt = self._fit_prompt(generator, hits)
        timings = {"query_ms": milliseconds(started, queried),
                   "retrieval_ms": milliseconds(queried, retrieved),
                   "prompt_ms": milliseconds(retrieved, time.perf_counter())}
        return generator, query, prompt, started, timings

    def _generate(self, turn: _Turn) -> None:
        """Stream the model's pieces to the reader as whole, filtered words, saving the text
        shown as it goes, until the model ends, a stop sequence comes, or nobody reads."""
        policies = self.policies
        adapter = self.variant.name if self.variant.adapter_dir else None
        turn.pieces = iter([policies.retrieval.refusal]) if turn.refuse else turn.generator.stream(
            turn.prompt.messages, self.settings, adapter, cancel=self._cancelled)
        ready, saved_at = "", time.monotonic()
        hold_back = HOLD_BACK_CHARS if policies.filters else 0
        try:
            for piece in turn.pieces:
                if turn.first is None:  # the wait for a reader starts with the first piece
                    turn.first, self._last_read = time.perf_counter(), time.monotonic()
                if self._abandoned():
                    break
                turn.raw += piece
                visible, turn.stopped = before_stop(turn.raw, self.settings.stop)
                if (now_ready := complete_words(visible.lstrip())) != ready:
                    ready = now_ready  # filters rerun only once another word is complete
                    safe = settled(run_filters(policies.filters, ready)[0], hold_back)
                    if safe.startswith(turn.shown) and len(safe) > len(turn.shown):
                        if not self._held:  # else shown only once attribution allows it
                            self._events.put(("piece", safe[len(turn.shown):]))
                        turn.shown = safe
                if time.monotonic() - saved_at >= self.SAVE_EVERY_S:
                    self._log_partial(turn.id, turn.shown)
                    saved_at = time.monotonic()
                if turn.stopped:  # stop generating now, not at max_new_tokens
                    break
        finally:
            getattr(turn.pieces, "close", lambda: None)()
        if (textless := getattr(turn.pieces, "textless", None)) is not None:
            raise textless  # a remote's answer without a word: no empty bubble

    def _finish(self, turn: _Turn, status: str, error: str | None) -> None:
        """Settle the answer's text, attribute it, give the reader the rest and log the turn:
        run whatever way the answer ended."""
        policies, complete = self.policies, status == "complete"
        text, changed = self._final_text(turn, status)
        timings = turn.timings | generation_timings(
            turn.started, turn.first, turn.raw, turn.generator, turn.refuse,
            self.settings.max_new_tokens)
        if complete and not self._held and text.startswith(turn.shown) and len(text) > len(
                turn.shown):
            self._events.put(("piece", text[len(turn.shown):]))  # all shown before attribution
        attribution = None
        if complete and not turn.refuse and self._attributed:
            passages = [hit.text for hit in turn.prompt.hits]
            attribution, text = policies.attributor.judge(text, passages)
            timings["attribution_ms"] = attribution.ms
        if complete and self._held and text:
            self._events.put(("piece", text))
        cut_at_limit = complete and not turn.refuse and not turn.stopped and reached_token_limit(
            turn.pieces, timings["tokens"], self.settings.max_new_tokens)
        self.reply = Reply(text, turn.prompt.messages, turn.prompt.hits, self.variant.name,
                           self.variant.model, self.variant.adapter_id, timings, turn.refuse,
                           changed, turn.id, 0 if turn.refuse else turn.prompt.tokens, turn.query,
                           attribution, cut_at_limit)
        self._log_finish(turn.id, text, timings, status, attribution, error)

    def _final_text(self, turn: _Turn, status: str) -> tuple[str, list[str]]:
        """The answer as logged, and the filters that changed it: all of it, filtered whole,
        once complete; else what the reader took (all it was given, once it reads on to the
        end: after an error, or a shutdown it is told of)."""
        if status == "complete":
            answered = before_stop(turn.raw, self.settings.stop, final=True)[0]
            return run_filters(self.policies.filters, answered.strip())
        reads_on = status == "error" or self.cut_short_by_shutdown
        text = turn.shown if reads_on else turn.shown[:self._taken]
        return text, run_filters(self.policies.filters, text)[1]

    @property
    def _attributed(self) -> bool:
        """The answer is judged against its passages: a variant that reads no documents
        (``retrieval: false``) has none, and every sentence would count as unsupported."""
        return self.policies.attributor is not None and self.variant.retrieval

    @property
    def _held(self) -> bool:
        """The answer is shown only once attributed (a policy that may withhold it)."""
        return self._attributed and self.policies.attributor.holds_answers

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
        began_by = log.ensure_session(self.session_id, self.variant.name, self.client)
        if self.client is not None and began_by != self.client:
            raise SessionNotYours(self.session_id)
        return log.add_question(
            self.session_id, self.question, variant=self.variant.name,
            model_id=self.variant.model, adapter_id=self.variant.adapter_id,
            messages=[m.as_dict() for m in messages], hits=[hit_record(h) for h in hits],
            settings=self.settings.__dict__ | {"stop": list(self.settings.stop),
                                               "retrieval_query": query})

    def _log_partial(self, turn_id: int | None, text: str) -> None:
        if self.policies.log is not None and turn_id is not None:
            self.policies.log.save_partial(turn_id, text)

    def _log_finish(self, turn_id: int | None, text: str, timings: dict, status: str,
                    attribution: Attribution | None, error: str | None) -> None:
        if self.policies.log is not None and turn_id is not None:
            self.policies.log.finish_turn(turn_id, text, timings, status,
                                          attribution and attribution.as_dict(), error)
