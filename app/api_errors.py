"""Failures of the OpenAI-compatible API (``/v1`` and ``/tokenize``) as OpenAI's error shape.

``error_response`` turns what a route raised or an answer's thread reported into a status, the
``{"error": {...}}`` body OpenAI clients read, and the retry headers they obey.
``UnexpectedApiFailures`` gives every API route the same answer for an exception it did not
expect, instead of Starlette's plain-text "Internal Server Error".
"""

from __future__ import annotations

import logging
import math
import uuid

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api_request_id import with_request_id
from app.api_schema import RequestError, error_body, is_api_path
from chatbot.errors import (BackendError, ConfigError, DocumentIndexError, GenerationFailed,
                            InputError, ModelError, PromptTooLong, SessionNotYours)

logger = logging.getLogger(__name__)

BUSY_RETRY_AFTER_S = 1
"""The ``Retry-After`` of a 429 (and of a 503 for a generation server still busy): answers on a
small model free a place within seconds."""
MAX_RETRY_AFTER_S = 300
"""The longest ``Retry-After`` passed on from a busy remote backend: its hour-long rate limit
may lift sooner, and a caller told to sleep an hour looks hung."""


def error_parts(exc: BaseException, route: str) -> tuple[int, dict]:
    """(status, body) of ``exc``; ``route`` names the request in the server log, with the
    request's ``x-request-id``."""
    route = with_request_id(route)
    if isinstance(exc, RequestError):
        return exc.status, exc.body()
    if isinstance(exc, SessionNotYours):  # a web visitor's (the Review tab shows its id)
        return 409, error_body(f"{exc} or for another user; send an X-Session-Id of your "
                               "own, or none for a new session", "invalid_request_error",
                               "X-Session-Id", "session_not_yours")
    if isinstance(exc, PromptTooLong):  # OpenAI's code, which clients look for to trim
        return 400, error_body(str(exc), "invalid_request_error", "messages",
                               "context_length_exceeded")
    if isinstance(exc, InputError):
        return 400, error_body(str(exc), "invalid_request_error", "messages", "invalid_input")
    if isinstance(exc, GenerationFailed):  # its words are torch's, not ours
        return 500, _internal_error(exc, route)
    if isinstance(exc, ModelError) and getattr(exc, "busy", False):  # a remote's, or ours
        logger.error("%s failed: %s", route, exc)
        return 503, error_body(exc.public, "server_error", "model", "backend_busy")
    if isinstance(exc, BackendError) and exc.unreachable:  # down or starting, as a 502 says
        logger.error("%s failed: %s", route, exc)
        return 503, error_body(exc.public, "server_error", "model", "backend_unreachable")
    if isinstance(exc, (ModelError, ConfigError)):
        logger.error("%s failed: %s", route, exc)
        return 500, error_body(exc.public, "server_error", "model", "model_unavailable")
    if isinstance(exc, DocumentIndexError):  # e.g. damaged: the message says what to run
        logger.error("%s failed: %s", route, exc)
        return 500, error_body(exc.public, "server_error", None, "index_unavailable")
    return 500, _internal_error(exc, route)


def _internal_error(exc: BaseException, route: str) -> dict:
    """An unexpected failure's text may name the server's files, addresses or data: the client
    gets an id to quote, the server log has it beside the traceback."""
    error_id = uuid.uuid4().hex[:8]
    logger.error("%s failed (error id %s)", route, error_id, exc_info=exc)
    return error_body(f"internal error; the server log has the details under error id "
                      f"{error_id}", "server_error", None, "internal_error")


def error_response(exc: BaseException, route: str) -> JSONResponse:
    """The error as a response. A busy server, or a generation server still busy or
    unreachable after our retries, asks to be tried again later (OpenAI clients do, twice by
    default); any other failure of the server (a 500: the model, a backend, the index, the
    unexpected) asks not to be: a remote backend has been retried already, and each retry
    would log another failed turn; nor is a session that another client began."""
    status, body = error_parts(exc, route)
    if status in (429, 503):
        headers = {"Retry-After": str(retry_after_s(exc))}
    elif status in (409, 500):  # openai retries a 409 too
        headers = {"x-should-retry": "false"}
    else:
        headers = None
    return JSONResponse(body, status_code=status, headers=headers)


def retry_after_s(exc: BaseException) -> int:
    """Whole seconds a busy server's caller should wait: what a busy remote backend asked
    for, within ``BUSY_RETRY_AFTER_S`` and ``MAX_RETRY_AFTER_S``, else ``BUSY_RETRY_AFTER_S``."""
    asked = getattr(exc, "retry_after_s", None)
    if asked is None:
        return BUSY_RETRY_AFTER_S
    return min(max(math.ceil(asked), BUSY_RETRY_AFTER_S), MAX_RETRY_AFTER_S)


class UnexpectedApiFailures:
    """ASGI middleware: an exception out of an API route, before its response started, is
    answered by ``error_response`` (a 500 with an error id, the traceback logged under it)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_api_path(scope["path"]):
            return await self.app(scope, receive, send)
        started = False

        async def noting_start(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, noting_start)
        except Exception as exc:
            if started:  # a stream already under way: nothing can be said in its place
                raise
            response = error_response(exc, f"{scope['method']} {scope['path']}")
            await response(scope, receive, send)
