"""A cap on the request bodies of the web UI's routes (Gradio's, the login form).

Gradio reads a request's whole body into memory, with no limit of its own but a file upload's
size; the ``/v1`` routes check their bodies themselves (``app/api_schema.py``). Every other
route may take what one API request may send, so no caller can make the server hold more.
"""

from __future__ import annotations

from starlette.middleware.body_limit import RequestBodyLimitMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

API_PREFIX = "/v1/"
UPLOAD_PATH = "/gradio_api/upload"
"""Files are streamed to disk, each within ``index.max_file_mb`` (``app/ui/app.py``)."""


class WebUiBodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.limited = RequestBodyLimitMiddleware(app, max_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path.startswith(API_PREFIX) or path == UPLOAD_PATH:
            await self.app(scope, receive, send)
        else:
            await self.limited(scope, receive, send)
