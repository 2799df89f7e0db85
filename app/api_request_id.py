"""An id for every API request, as OpenAI's ``x-request-id``: clients log it beside a failure,
and the server log names it on that failure's line, so a user's report can be matched. A
caller's or proxy's own id is kept when it is safe to write into a log line, so its logs and
ours name a request alike."""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api_schema import is_api_path

HEADER = "x-request-id"
REQUEST_ID: ContextVar[str | None] = ContextVar("api_request_id", default=None)
"""The id of the API request being answered (its route, its stream, its error log)."""
CALLERS_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")
"""A caller's id we keep: short, and no character (space, bracket, newline) that could make a
log line say what the server did not write."""


def with_request_id(route: str) -> str:
    """``route`` as the server log names it, with the id of the request if there is one."""
    request_id = REQUEST_ID.get()
    return f"{route} (request {request_id})" if request_id else route


def callers_id(scope: Scope) -> str | None:
    """The request's one ``x-request-id``, if it matches ``CALLERS_ID``; else ``None``."""
    sent = [value for name, value in scope["headers"] if name == HEADER.encode()]
    if len(sent) == 1 and CALLERS_ID.fullmatch(sent[0]):
        return sent[0].decode()
    return None


class RequestIds:
    """ASGI middleware: each API request gets an id (the caller's well-formed
    ``x-request-id``, else a new one), sent back in ``x-request-id`` on its response,
    whatever answered it (a route, the credential check, an error)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_api_path(scope["path"]):
            return await self.app(scope, receive, send)
        request_id = callers_id(scope) or f"req_{uuid.uuid4().hex}"

        async def with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[HEADER] = request_id
            await send(message)

        token = REQUEST_ID.set(request_id)  # seen by the route and the tasks it starts
        try:
            await self.app(scope, receive, with_id)
        finally:
            REQUEST_ID.reset(token)
