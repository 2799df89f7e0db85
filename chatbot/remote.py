"""Generation by an OpenAI-compatible server (vLLM, Ollama, llama.cpp's ``llama-server``, ...).

The engine renders the exact messages as for a model run here and ``OpenAIGenerator`` sends
them as chat messages, streamed back piece by piece. Each backend caps the requests in flight
(``max_concurrency``, waited for at most ``queue_timeout_s``: ``chatbot.remote_backend``);
connection failures, a busy server (429, 503) and a gateway in front of it that found it down
or slow (502, 504) are retried with a bounded backoff before the first piece, never after it,
so an answer is never repeated. Every failure becomes a
``BackendError`` that names the backend and what to check.

Token counts for the context budget come from the served model's tokenizer when it loads here,
else from the server's ``/tokenize`` (vLLM's, or another chatbot-builder's), else an estimate
that overcounts; ``OpenAIGenerator.counting`` says which. The context window is the variant's
``context_window``, else the ``max_model_len`` of the server's ``/v1/models`` card.
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
from collections.abc import Callable, Iterator
from http import HTTPStatus
from pathlib import Path

import httpx
import openai

from chatbot.errors import BackendError, ModelError
from chatbot.generate import GenerationSettings, chat_ids
from chatbot.penalties import penalizes
from chatbot.remote_backend import RemoteBackend
from chatbot.remote_check import backend_key, backend_problems, key_setting
from chatbot.remote_connection import catch_connection, hung_up_on_cancel
from chatbot.remote_model import (BUSY, CHARS_PER_TOKEN, DEFAULT_CONTEXT_WINDOW, GATEWAY_ERRORS,
                                  ServerModel)
from chatbot.remote_retry import (MAX_WAIT_S, RETRIES, asked_wait_s, wait_before_retry,
                                  worth_retrying)
from chatbot.types import Message

logger = logging.getLogger(__name__)

GAVE_UP = ("abort", "error")
"""The ``finish_reason`` of an answer the server's engine aborted or failed (vLLM's)."""
CONTEXT_ERROR = re.compile(r"context|too long|maximum.*length|tokens in all", re.IGNORECASE)


class ServerAnswer(Iterator[str]):
    """The text pieces of one answer as the server streams them, and its ``finish_reason``
    once it has ended: the server's own word on whether the answer reached ``max_tokens``,
    which an estimated token count (no tokenizer here, no ``/tokenize``) can't give."""

    def __init__(self, pieces: Callable[[ServerAnswer], Iterator[str]]) -> None:
        self.finish_reason: str | None = None
        self.textless: BackendError | None = None
        """Set once the answer ended without a word: what its reader is told instead of an
        empty answer (a caller that takes any text, a query's rewrite, may ignore it)."""
        self._pieces = pieces(self)

    def __next__(self) -> str:
        return next(self._pieces)

    def close(self) -> None:
        self._pieces.close()


class OpenAIGenerator:
    """The ``Generator`` protocol over one model of one ``RemoteBackend``.

    Token counts for the context budget come from the served model's tokenizer when one loads
    here (``tokenizer``, else ``model`` itself if it is a local directory or a cached Hugging
    Face id); else from the server's ``/tokenize``; else they are estimated as characters / 3
    plus 4 per message, which overcounts, so a trimmed prompt still fits. ``context_window``
    (the variant's) wins over the server's ``max_model_len``; with neither it is 4096.
    """

    def __init__(self, backend: RemoteBackend, model: str, tokenizer: str | None = None,
                 context_window: int | None = None) -> None:
        self.backend = backend
        self.model_id = model
        self._window = context_window
        self.fingerprint = f"remote:{backend.name}:{model}"
        self.template_hash = ""  # remote variants take no local adapters
        self.tokenizer = _load_tokenizer(tokenizer, model)
        key = backend_key(backend.name, backend.api_key_env)
        self._sends_key = bool(key)
        http = httpx.Client(follow_redirects=True,  # a cancel hangs up on each new connection
                            limits=httpx.Limits(max_connections=None, max_keepalive_connections=0),
                            event_hooks={"request": [catch_connection]})
        self._client = openai.OpenAI(base_url=backend.base_url, api_key=key or "none",
                                     timeout=backend.timeout_s, max_retries=0, http_client=http)
        self.server = ServerModel(backend.name, backend.base_url, model, key, backend.timeout_s)
        if self.tokenizer is not None:
            logger.info("%s counts tokens with %s", self.server.what, self.counting)

    @property
    def context_window(self) -> int:
        """Tokens the model reads, prompt and answer; the server is asked once, when needed."""
        return self._window or self.server.max_model_len() or DEFAULT_CONTEXT_WINDOW

    @property
    def counting(self) -> str:
        """How prompts are counted for the context budget, in words for the log and users."""
        if self.tokenizer is not None:
            return f"tokenizer {self.tokenizer.name_or_path}"
        if self.server.tokenize_works():
            return f"server {self.server.tokenize_url}"
        return f"estimate: {CHARS_PER_TOKEN} characters per token"

    def server_problem(self) -> str | None:
        """What would fail this model's answers now (``chatbot.remote_check``), for ``chatbot
        serve`` to say at start, before a user meets it; ``None`` when the server looks ready
        (or can't tell: it lists no models)."""
        problems = backend_problems(self.backend.name, self.backend.base_url, self.server.get,
                                    {self.model_id: "the variant's model"}, self._key_setting())
        return problems[0] if problems else None

    def load_adapter(self, name: str, path: str | Path) -> None:
        raise ModelError(f"adapter {name!r} can't be served by backend {self.backend.name!r}: "
                         "a remote server loads no local adapters; serve it on the server, or "
                         "drop the variant's backend")

    def count_tokens(self, messages: list[Message]) -> int:
        if self.tokenizer is not None and self.tokenizer.chat_template:
            return len(chat_ids(self.tokenizer, [m.as_dict() for m in messages]))
        if self.tokenizer is None:
            counted = self.server.count({"messages": [m.as_dict() for m in messages],
                                         "add_generation_prompt": True})
            if counted is not None:
                return counted
        return sum(self.count_text(m.content) + 4 for m in messages)

    def count_text(self, text: str) -> int:
        if self.tokenizer is not None:
            return len(self.tokenizer.encode(text, add_special_tokens=False))
        counted = self.server.count({"prompt": text, "add_special_tokens": False})
        return math.ceil(len(text) / CHARS_PER_TOKEN) if counted is None else counted

    def stream(self, messages: list[Message], settings: GenerationSettings,
               adapter: str | None = None,
               cancel: threading.Event | None = None) -> ServerAnswer:
        """Text pieces as the server sends them; setting ``cancel`` or closing the iteration
        closes the HTTP stream, which stops generation on servers that notice (vLLM does)."""
        if adapter:
            self.load_adapter(adapter, "")
        return ServerAnswer(lambda answer: self._streamed(messages, settings,
                                                          cancel or threading.Event(), answer))

    def _streamed(self, messages: list[Message], settings: GenerationSettings,
                  cancel: threading.Event, answer: ServerAnswer) -> Iterator[str]:
        if not self.backend.take_slot(cancel):
            return
        try:
            with hung_up_on_cancel(cancel):  # within an answer, the answer's own goes on
                response = self._open(messages, settings, cancel)
                if response is not None:
                    yield from self._pieces(response, cancel, answer, settings.max_new_tokens)
        finally:
            self.backend.slots.release()

    def _open(self, messages: list[Message], settings: GenerationSettings,
              cancel: threading.Event):
        request = dict(model=self.model_id, messages=[m.as_dict() for m in messages],
                       stream=True, max_tokens=settings.max_new_tokens,
                       temperature=settings.temperature, top_p=settings.top_p)
        if settings.stop:
            request["stop"] = list(settings.stop)
        if settings.seed is not None:
            request["seed"] = settings.seed
        if penalizes(settings):
            request.update(presence_penalty=settings.presence_penalty,
                           frequency_penalty=settings.frequency_penalty)
        for attempt in range(RETRIES + 1):
            try:
                return self._client.chat.completions.create(**request)
            except openai.APIError as exc:
                if cancel.is_set():  # hung up on (``chatbot.remote_connection``)
                    return None
                if attempt == RETRIES or not worth_retrying(exc):
                    raise self._failure(exc, attempt) from exc
                if (asked := asked_wait_s(exc)) is not None and asked > MAX_WAIT_S:
                    raise self._asks_to_wait(exc, asked) from exc
                if cancel.wait(wait_before_retry(exc, attempt)):
                    return None
        return None

    def _pieces(self, response, cancel: threading.Event, answer: ServerAnswer,
                max_tokens: int) -> Iterator[str]:
        received, blank = 0, True
        try:
            for chunk in response:
                if cancel.is_set():
                    return
                try:
                    parts = _chunk_parts(chunk)
                except ValueError as exc:
                    raise self._garbled("not a chat completion chunk", received, exc) from None
                for text, finish_reason in parts:
                    if text:
                        received, blank = received + len(text), blank and not text.strip()
                        yield text
                    answer.finish_reason = finish_reason or answer.finish_reason
        except (openai.APIError, httpx.HTTPError) as exc:
            if cancel.is_set():
                return
            raise self._cut(received, exc) from exc
        except json.JSONDecodeError as exc:
            raise self._garbled("not JSON", received, exc) from exc
        finally:
            response.close()
        if answer.finish_reason is None and not cancel.is_set():
            kind = response.response.headers.get("content-type", "")
            if not received and "text/event-stream" not in kind:
                raise self._error(f"{self._where()} answered with {kind or 'no content type'}, "
                                  "not an OpenAI-compatible event stream; check that backends."
                                  f"{self.backend.name}.base_url is the server's /v1 URL")
            raise self._cut(received, None)
        if answer.finish_reason in GAVE_UP and not cancel.is_set():
            raise self._error(f"{self._where()} gave up on the answer after {received} characters "
                              f"(finish_reason {answer.finish_reason!r}); check the server's log")
        if blank and not cancel.is_set():
            answer.textless = self._textless(answer.finish_reason, max_tokens)

    def _where(self) -> str:
        return f"backend {self.backend.name!r} ({self.backend.base_url})"

    def _error(self, message: str, busy: bool = False, retry_after_s: float | None = None,
               unreachable: bool = False) -> BackendError:
        return BackendError(message, self.backend.base_url, busy, retry_after_s, unreachable)

    def _garbled(self, what: str, received: int, why: BaseException) -> BackendError:
        return self._error(f"{self._where()} sent an event that is {what} after {received} "
                           f"characters of the answer ({why}); check that backends."
                           f"{self.backend.name}.base_url is an OpenAI-compatible server's "
                           "/v1 URL, and the server's log")

    def _textless(self, finish_reason: str | None, max_tokens: int) -> BackendError:
        """An answer that ended without a word: shown, it would be an empty bubble."""
        if finish_reason == "length":
            return self._error(f"{self._where()} spent all {max_tokens} new tokens without any "
                               "answer text (finish_reason 'length'); allow more new tokens "
                               "(a reasoning model spends them thinking)")
        return self._error(f"{self._where()} ended the answer without any text (finish_reason "
                           f"{finish_reason!r}); check the server's log, and that model "
                           f"{self.model_id!r} is a chat model")

    def _cut(self, received: int, exc: BaseException | None) -> BackendError:
        if isinstance(exc, (httpx.TimeoutException, openai.APITimeoutError)):
            return self._error(f"{self._where()} sent nothing for {self.backend.timeout_s:g} s "
                               f"after {received} characters of the answer; check the server's "
                               f"load, or raise backends.{self.backend.name}.timeout_s")
        why = f": {_server_message(exc)}" if exc is not None else ""
        return self._error(f"{self._where()} stopped the answer after {received} characters"
                           f"{why}; check that the server is still running and its log")

    def _key_setting(self) -> str:
        return key_setting(self.backend.name, self.backend.api_key_env, self._sends_key,
                           "it was not set when the bot started")

    def _asks_to_wait(self, exc: openai.APIError, seconds: float) -> BackendError:
        """A rate limit or a long restart: retrying sooner than asked only meets it again."""
        return self._error(f"{self._where()} is busy (HTTP {exc.status_code}: "
                           f"{_server_message(exc)}) and asks to be tried again in "
                           f"{seconds:.0f} s, longer than the bot waits ({MAX_WAIT_S:g} s); ask "
                           "again later, or check the server's rate limits", busy=True,
                           retry_after_s=seconds)

    def _redirected(self, exc: openai.APIStatusError) -> BackendError:
        """A redirect (an http:// URL of a server behind https) turned the POST into a GET,
        which the server refuses: the fix is the URL it redirects to, not the server."""
        name, moved_to = self.backend.name, str(exc.response.url).removesuffix("/chat/completions")
        where = f"{self.backend.base_url}, which redirects to {moved_to}"
        return BackendError(f"backend {name!r} ({where}) refused the request the redirect sent "
                            f"on (HTTP {exc.status_code}: {_server_message(exc)}); set backends."
                            f"{name}.base_url to the URL it redirects to", where)

    def _failure(self, exc: openai.APIError, retries: int) -> BackendError:
        name, where = self.backend.name, self._where()
        message = _server_message(exc)
        if isinstance(exc, openai.APITimeoutError) and isinstance(exc.__cause__,
                                                                  httpx.ConnectTimeout):
            return self._error(f"{where} took no connection within {self.backend.timeout_s:g} "
                               f"s; check that the server is running and backends.{name}."
                               "base_url (a wrong host, or a firewall dropping connections)",
                               unreachable=True)
        if isinstance(exc, openai.APITimeoutError):
            return self._error(f"{where} did not answer within {self.backend.timeout_s:g} s; "
                               f"check the server's load, or raise backends.{name}.timeout_s")
        if isinstance(exc, openai.APIConnectionError):
            return self._error(f"{where} is unreachable after {retries} retries ({message}); "
                               f"check that the server is running and backends.{name}.base_url",
                               unreachable=True)
        if isinstance(exc, openai.APIStatusError) and exc.response.history:
            return self._redirected(exc)
        status = getattr(exc, "status_code", None)
        if isinstance(exc, (openai.AuthenticationError, openai.PermissionDeniedError)):
            return self._error(f"{where} refused the API key (HTTP {status}: {message}); "
                               f"check {self._key_setting()}")
        if isinstance(exc, openai.NotFoundError):
            return self._error(f"{where} does not serve model {self.model_id!r} (HTTP 404: "
                               f"{message}); check the variant's model against the server's "
                               "/v1/models, and that base_url ends in /v1")
        if isinstance(exc, openai.BadRequestError) and CONTEXT_ERROR.search(message):
            return self._error(f"{where}: the prompt and answer exceed what model "
                               f"{self.model_id!r} reads ({message}); set the variant's "
                               "context_window to the server's context length, or lower "
                               "generation.max_new_tokens")
        if status in BUSY:
            return self._error(f"{where} is still busy (HTTP {status}) after {retries} retries; "
                               f"lower backends.{name}.max_concurrency or give the server "
                               "more capacity", busy=True, retry_after_s=asked_wait_s(exc))
        if status in GATEWAY_ERRORS:
            return self._error(f"{where} answered HTTP {status} ({HTTPStatus(status).phrase}) "
                               f"after {retries} retries: the server behind it is down, "
                               "starting or overloaded; check that it is running, and its log",
                               busy=True, retry_after_s=asked_wait_s(exc))
        return self._error(f"{where} failed (HTTP {status}: {message}); check the server's log")


def _chunk_parts(chunk) -> list[tuple[str | None, str | None]]:
    """(text, finish_reason) of each choice of a streamed chunk. The client builds chunks
    without checking them, so an event of another shape is caught here, as a ``ValueError``
    that says what is wrong, not as a ``TypeError`` deep in the answer."""
    seen = f"{chunk!r:.200}"
    choices = getattr(chunk, "choices", None)
    if not isinstance(choices, list):
        raise ValueError(f"no choices: {seen}")
    parts = []
    for choice in choices:
        delta = getattr(choice, "delta", None)
        if delta is not None and not hasattr(delta, "content"):
            raise ValueError(f"a choice's delta is not an object: {seen}")
        text, finish_reason = getattr(delta, "content", None), getattr(choice, "finish_reason",
                                                                       None)
        if not isinstance(text, (str, type(None))):
            raise ValueError(f"a choice's content is not text: {seen}")
        if not isinstance(finish_reason, (str, type(None))):
            raise ValueError(f"a choice's finish_reason is not text: {seen}")
        parts.append((text, finish_reason))
    return parts


def _load_tokenizer(tokenizer: str | None, model: str):
    """``tokenizer`` (an error if it does not load), else ``model`` if it loads without a
    download, else ``None`` (estimated counts)."""
    from transformers import AutoTokenizer

    if tokenizer is not None:
        try:
            return AutoTokenizer.from_pretrained(tokenizer)
        except (OSError, ValueError) as exc:
            raise ModelError(f"could not load tokenizer {tokenizer!r}: {exc}; check the "
                             "variant's tokenizer (a Hugging Face id or a model directory)")
    try:
        return AutoTokenizer.from_pretrained(model, local_files_only=True)
    except (OSError, ValueError):
        return None


def _server_message(exc: BaseException | None) -> str:
    """The server's own words: OpenAI's ``error.message``, another server's ``error`` or
    ``detail`` text (Text Generation Inference's, FastAPI's), a plain-text body's first line;
    else the HTTP status's name (an HTML page), else the failure's."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        said = inner.get("message") if isinstance(inner, dict) else inner
        for words in (said, body.get("message"), body.get("detail")):
            if isinstance(words, str) and words:
                return words
    if isinstance(body, str) and body.strip() and not body.lstrip().startswith("<"):
        return body.strip().splitlines()[0][:200]
    status = getattr(exc, "status_code", None)
    if status in list(HTTPStatus):
        return HTTPStatus(status).phrase
    cause = getattr(exc, "__cause__", None)
    return str(cause or exc)
