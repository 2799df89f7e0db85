"""Which logged session an API request belongs to, and who it is recorded as coming from.

OpenAI's API is stateless: a chat app sends the whole conversation with each question, and
``user`` names the person (LibreChat sends the same ``user`` with every one of a person's
conversations; Open WebUI sends none, but a header, ``api_client``). So a request continues,
in order:

- the session its ``X-Session-Id`` header names (a client that keeps its own ids);
- else the session of the same caller and ``user`` whose logged turns are exactly the earlier
  messages it sends: the conversation it continues;
- else a new session, ``api-`` and 16 hex digits.

The session's client (``chatbot.logs``) records the caller and the user, ``api:alice
user=42``; only that client may add to the session.
"""

from __future__ import annotations

import uuid

from starlette.requests import Request

from app.api_schema import API_CLIENT, ChatRequest, RequestError
from chatbot.engine import Engine
from chatbot.errors import SessionNotYours
from chatbot.types import Message
from index.text import clean_text

MAX_SESSION_ID_CHARS = 200
OPEN_WEBUI_USER = "x-openwebui-user-id"
"""Where Open WebUI, which sends no ``user``, names its user when told to
(``ENABLE_FORWARD_USER_INFO_HEADERS``)."""


def api_client(request: Request, chat: ChatRequest) -> str:
    """What the log records as a session's client: ``api``, who called where the server
    knows (``api:alice``, ``api:api-key``), and the person the request names: its ``user``,
    else its ``safety_identifier`` (OpenAI's newer name), else Open WebUI's header."""
    caller = getattr(request.state, "caller", None)
    client = f"{API_CLIENT}:{caller}" if caller else API_CLIENT
    named = chat.user or chat.safety_identifier or request.headers.get(OPEN_WEBUI_USER)
    user = clean_text(named or "").strip()[:MAX_SESSION_ID_CHARS]
    return f"{client} user={user}" if user else client


def session_for(engine: Engine, request: Request, history: list[Message], client: str) -> str:
    """The session the request continues (see the module's docstring); a session another
    client began is refused before anything is done for the request (an A/B assignment, a
    search); the engine checks again as it claims a new session, which two callers may name
    at once."""
    session = clean_text(request.headers.get("x-session-id") or "").strip()
    if len(session) > MAX_SESSION_ID_CHARS:
        raise RequestError(f"the X-Session-Id header is longer than {MAX_SESSION_ID_CHARS} "
                           "characters", param="X-Session-Id", code="invalid_value")
    if not session and engine.log is not None and history:
        session = engine.log.session_holding(client, [(m.role, m.content) for m in history])
    if not session:
        return f"api-{uuid.uuid4().hex[:16]}"
    if engine.log is not None and engine.log.started_by(session) not in (None, client):
        raise SessionNotYours(session)
    return session
