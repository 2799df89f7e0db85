"""Requests another site's page makes its visitor's browser send are refused.

A page anywhere can make its visitor's browser post a form or a file upload, with no CORS
preflight to stop it: to a server on the visitor's own machine that has no login, or to one
the visitor is logged in to (the login cookie goes along). Browsers say where such a request
comes from in ``Sec-Fetch-Site``; a request that would change something is served only from
the server's own pages (``same-origin``) or the user's own doing (``none``: a typed address).
Programs (the ``openai`` client, curl, Gradio's Python client) send no such header.

The API sends no CORS headers, ever: with them another site's page could read the answers of
a server with no login, or of one on its visitor's own machine. A browser's CORS preflight
for it (another site's page asking to call it) is answered with a 403 that says so, before a
credential is asked for (a preflight never carries one).

A page of another site can also give its own name the address 127.0.0.1 (DNS rebinding): the
browser then takes the local server for that site, and its requests for the same origin
(``same-origin``), reads included. Its requests still name the site in ``Host``: a server with
no login on a loopback address answers only requests sent to a loopback name.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api_schema import error_body, is_api_path, echoed
from app.auth import is_loopback

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
OWN_PAGES = frozenset({"same-origin", "none"})
MESSAGE = ("this server takes requests that change something only from its own pages; a page "
           "of another site (Sec-Fetch-Site: {site}) can't send them")
PREFLIGHT = ("this server does not answer pages of other sites in a browser (Origin: {origin}): "
             "call {path} from a program or your own server instead")
NOT_LOCAL = ("this server listens on {address} with no login, so it answers only requests sent "
             "to localhost or {address}, not to {host}: a page of another site may have given "
             "its own name that address; to serve it under another name (behind a proxy), add "
             "its name to server.allowed_hosts, or set a login or an API key")


class CrossSiteRefusal:
    """ASGI middleware: a 403 for a browser's write request that another site's page sent."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _api_preflight(scope):
            message = PREFLIGHT.format(origin=echoed(Headers(scope=scope)["origin"]),
                                       path=echoed(scope["path"]))
            body = error_body(message, "invalid_request_error", None, "cross_origin_request")
            return await JSONResponse(body, status_code=403)(scope, receive, send)
        if scope["type"] == "http" and scope["method"] not in SAFE_METHODS:
            site = Headers(scope=scope).get("sec-fetch-site")
            if site is not None and site not in OWN_PAGES:
                refusal = _refusal(scope, MESSAGE.format(site=site), "cross_site_request")
                return await refusal(scope, receive, send)
        await self.app(scope, receive, send)


class LocalNamesOnly:
    """ASGI middleware for a server with no login: on a loopback address, a 403 for a request
    sent to any name but a loopback one (``localhost``, ``127.0.0.1``, ``[::1]``) or one of
    ``allowed`` (``server.allowed_hosts``)."""

    def __init__(self, app: ASGIApp, allowed: list[str] | tuple[str, ...] = ()) -> None:
        self.app = app
        self.allowed = frozenset(name.lower() for name in allowed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        address = (scope.get("server") or ("",))[0]
        if scope["type"] in ("http", "websocket") and is_loopback(address):
            host = _host_name(Headers(scope=scope).get("host", ""))
            if not is_loopback(host) and host.lower() not in self.allowed:
                named = echoed(host) if host else "no name"
                message = NOT_LOCAL.format(address=address, host=named)
                return await _refusal(scope, message, "not_local")(scope, receive, send)
        await self.app(scope, receive, send)


def _host_name(host: str) -> str:
    """``localhost:7860`` -> ``localhost``, ``[::1]:7860`` -> ``::1``."""
    if host.startswith("["):
        return host[1:].split("]")[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _refusal(scope: Scope, message: str, code: str) -> JSONResponse:
    """A 403 in the shape the route's callers read: OpenAI's under /v1, Starlette's elsewhere."""
    body = (error_body(message, "invalid_request_error", None, code)
            if scope["path"].startswith("/v1/") else {"detail": message})
    return JSONResponse(body, status_code=403)


def _api_preflight(scope: Scope) -> bool:
    """Whether a browser asks if another site's page may call the API (CORS)."""
    headers = Headers(scope=scope)
    return (scope["method"] == "OPTIONS" and is_api_path(scope["path"])
            and "origin" in headers and "access-control-request-method" in headers)
