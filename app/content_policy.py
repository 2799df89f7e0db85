"""What the server's pages may make a browser fetch: images and media from this server only.

A question, an answer or a passage may hold an image of another server (Markdown
``![](https://host/?q=...)`` or an ``<img>`` tag), and the chat draws Markdown and sanitized
HTML: drawn, the reader's browser would fetch that URL unseen. A document written to make the
model put the conversation into such a URL would send it away. The browser enforces the
``Content-Security-Policy`` header; links still work, since they need the reader's click.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

POLICY = "img-src 'self' data: blob:; media-src 'self' data: blob:"


class OwnImagesOnly:
    """ASGI middleware: every response carries :data:`POLICY`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def with_policy(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).append("Content-Security-Policy", POLICY)
            await send(message)

        await self.app(scope, receive, with_policy)
