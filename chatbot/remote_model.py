"""What an OpenAI-compatible server says about one of its models: how many tokens it reads
(``max_model_len`` on its ``/v1/models`` card, as vLLM and chatbot-builder give it) and how many
tokens a prompt takes (vLLM's ``POST /tokenize``, which chatbot-builder serves too).

``chatbot.remote.OpenAIGenerator`` asks only when it has no tokenizer or context window of its
own, and falls back to an estimate that overcounts where the server can't say. A question
asked for an answer that is then cancelled is hung up on (``chatbot.remote_connection``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from http import HTTPStatus

import httpx

from chatbot.remote_check import model_cards
from chatbot.remote_connection import CANCEL_POLL_S, answer_cancelled, catch_connection

logger = logging.getLogger(__name__)

DEFAULT_CONTEXT_WINDOW = 4096
CHARS_PER_TOKEN = 3
"""The estimate without a tokenizer: about 4 characters make a token in English text, so 3
overcounts, and a prompt trimmed to the budget by it fits the server's context."""
COUNT_CACHE_SIZE = 4096
"""Server counts kept (by a digest of what was counted): trimming history asks again for the
same pairs at every turn of a conversation."""
ASK_AGAIN_AFTER_S = 30.0
"""A server unreachable or not ready is asked about its model again after this, not at every
count."""
ASK_TIMEOUT_S = 10.0
"""Most seconds a question about the model waits (less where the backend's ``timeout_s`` is
less): a healthy server answers these at once, and a hung one must not make every answer wait
out ``timeout_s`` for its card and its token count before the chat request waits it again."""
BUSY = (429, 503)
GATEWAY_ERRORS = (502, 504)
"""What a proxy or load balancer in front of the server answers while the server is down,
starting or too slow: worth asking again, as a busy server is."""


class ServerAnswer(Exception):
    """The server answered, but not with what was asked for."""


class NotReady(Exception):
    """The server is busy, or its gateway found it down (``BUSY``, ``GATEWAY_ERRORS``): its
    answer says nothing about the model, and it is asked again later."""

    def __init__(self, response: httpx.Response) -> None:
        status = response.status_code
        super().__init__(f"HTTP {status} {HTTPStatus(status).phrase}")


ASK_AGAIN = (httpx.TransportError, NotReady)
"""A question that failed so is asked again after ``ASK_AGAIN_AFTER_S``."""


class ServerModel:
    """What the server says about one of its models, asked only when needed: ``max_model_len``
    from its ``/v1/models`` card, and token counts from ``POST /tokenize`` (vLLM serves it at
    the root, beside ``/v1``). Answers are kept; a server that could not be reached or was not
    ready is asked again after ``ASK_AGAIN_AFTER_S``, so a bot started before its server
    catches up."""

    def __init__(self, backend: str, base_url: str, model: str, key: str | None,
                 timeout_s: float) -> None:
        self.model = model
        self.what = f"model {model!r} of backend {backend!r}"
        base = base_url.rstrip("/")
        self.models_url = f"{base}/models"
        self.tokenize_url = f"{base.removesuffix('/v1')}/tokenize"
        self._http = httpx.Client(timeout=min(timeout_s, ASK_TIMEOUT_S),
                                  headers={"Authorization": f"Bearer {key}"} if key else None,
                                  limits=httpx.Limits(max_keepalive_connections=0),
                                  event_hooks={"request": [catch_connection]})
        self._asking = threading.Lock()
        """Held while the server is asked a question, so concurrent answers wait for the
        first one's answer instead of asking again."""
        self._lock = threading.Lock()
        self._answers: dict[str, object] = {}
        self._ask_after: dict[str, float] = {}
        self._counts: OrderedDict[str, int] = OrderedDict()

    def max_model_len(self) -> int | None:
        return self._ask("max_model_len", self._card_length)

    def tokenize_works(self) -> bool:
        return bool(self._ask("tokenize", self._tokenize_probe))

    def count(self, body: dict) -> int | None:
        """The server's count for a ``/tokenize`` body (kept), or None where it gives none."""
        if not self.tokenize_works():
            return None
        key = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        with self._lock:
            if key in self._counts:
                self._counts.move_to_end(key)
                return self._counts[key]
        if answer_cancelled():
            return None
        try:
            count = self._tokenize(body)
        except ASK_AGAIN as exc:
            self._unreachable("tokenize", exc)
            return None
        except ServerAnswer as exc:
            logger.warning("%s: %s; this prompt is counted by estimate", self.what, exc)
            return None
        with self._lock:
            self._counts[key] = count
            while len(self._counts) > COUNT_CACHE_SIZE:
                self._counts.popitem(last=False)
        return count

    def get(self, url: str) -> httpx.Response:
        """``GET url`` of the server, with the backend's key, within ``ASK_TIMEOUT_S``."""
        return self._http.get(url)

    def _ask(self, question: str, ask: Callable[[], object]) -> object:
        """``ask()``'s answer, asked once; concurrent callers wait for the first, and stop
        waiting (``None``) once the answer they count for is cancelled."""
        while not self._asking.acquire(timeout=CANCEL_POLL_S):
            if answer_cancelled():
                return None
        try:
            with self._lock:
                if question in self._answers:
                    return self._answers[question]
                if time.monotonic() < self._ask_after.get(question, 0.0):
                    return None
            if answer_cancelled():
                return None
            try:
                answer = ask()
            except ASK_AGAIN as exc:
                self._unreachable(question, exc)
                return None
            with self._lock:
                self._answers[question] = answer
            return answer
        finally:
            self._asking.release()

    def _unreachable(self, question: str, exc: Exception) -> None:
        if answer_cancelled():  # hung up on by the answer's cancel: the server is not to blame
            return
        with self._lock:
            self._answers.pop(question, None)
            self._ask_after[question] = time.monotonic() + ASK_AGAIN_AFTER_S
        meanwhile, setting = ((f"tokens are estimated at {CHARS_PER_TOKEN} characters per "
                               "token", "tokenizer to count them here")
                              if question == "tokenize"
                              else (f"the context window is {DEFAULT_CONTEXT_WINDOW}",
                                    "context_window to not ask"))
        why = exc if isinstance(exc, NotReady) else f"{type(exc).__name__}: {exc}"
        logger.warning("%s: the server did not answer about %s (%s), so %s; it is asked again "
                       "in %g s (set the variant's %s)", self.what, question, why, meanwhile,
                       ASK_AGAIN_AFTER_S, setting)

    def _card_length(self) -> int | None:
        """``max_model_len`` of the model's card in ``/v1/models`` (vLLM's and ours carry it)."""
        response = _ready(self._http.get(self.models_url))
        length = next((card.get("max_model_len") for card in model_cards(response) or ()
                       if card.get("id") == self.model), None)
        if _is_count(length) and length > 0:
            logger.info("%s reads %d tokens (max_model_len at %s)", self.what, length,
                        self.models_url)
            return length
        if response.status_code in (401, 403):  # the cause to fix is the key, not the window
            logger.warning("%s: %s refused the API key (HTTP %d), so the context window is %d; "
                           "check the backend's api_key_env", self.what, self.models_url,
                           response.status_code, DEFAULT_CONTEXT_WINDOW)
            return None
        logger.warning("%s: %s (HTTP %d) gives no max_model_len for it, so the context window "
                       "is %d; set the variant's context_window to the server's context length",
                       self.what, self.models_url, response.status_code, DEFAULT_CONTEXT_WINDOW)
        return None

    def _tokenize_probe(self) -> bool:
        try:
            self._tokenize({"messages": [{"role": "user", "content": "hello"}],
                            "add_generation_prompt": True})
        except ServerAnswer as exc:
            logger.warning("%s: %s, so tokens are estimated at %d characters per token, which "
                           "overcounts; set the variant's tokenizer to count them exactly",
                           self.what, exc, CHARS_PER_TOKEN)
            return False
        logger.info("%s counts tokens with the server's %s", self.what, self.tokenize_url)
        return True

    def _tokenize(self, body: dict) -> int:
        response = _ready(self._http.post(self.tokenize_url,
                                          json={"model": self.model, **body}))
        answer = _json(response)
        count = answer.get("count") if isinstance(answer, dict) else None
        if not response.is_success or not _is_count(count):
            raise ServerAnswer(f"{self.tokenize_url} gave no token count (HTTP "
                               f"{response.status_code}{_said(answer)})")
        return count


def _ready(response: httpx.Response) -> httpx.Response:
    """``response``, unless it says the server is not ready (``NotReady``)."""
    if response.status_code in BUSY + GATEWAY_ERRORS:
        raise NotReady(response)
    return response


def _json(response: httpx.Response) -> object:
    try:
        return response.json()
    except ValueError:
        return None


def _said(answer: object) -> str:
    """``: message`` from an OpenAI-style error body, else nothing."""
    error = answer.get("error") if isinstance(answer, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    return f": {message}" if isinstance(message, str) else ""


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
