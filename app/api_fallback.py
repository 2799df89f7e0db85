"""Requests under ``/v1`` that no API route takes, answered in OpenAI's error shape.

The web UI is mounted at ``/`` and takes every path the routes before it do not, so without
this a client that sends ``GET /v1/chat/completions`` or asks for ``/v1/embeddings`` gets
Gradio's ``{"detail": "Not Found"}``: no 405 saying which method the route takes, and not the
``{"error": {...}}`` its OpenAI client reads.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.routing import Match, Mount

from app.api_schema import error_body, echoed

METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
FALLBACK = "/v1/{path:path}"
INSTEAD = {"/v1/completions": " (OpenAI's legacy text completions); send the prompt as the user "
                              "message of a /v1/chat/completions request"}
"""What to do instead, for OpenAI paths whose clients can be served another way."""


def add_api_fallback(server: FastAPI) -> None:
    """Add the fallback after every ``/v1`` route: routes are matched in order."""

    async def fallback(request: Request) -> JSONResponse:
        routes = [route for route in server.routes  # the UI's mount takes any method
                  if getattr(route, "endpoint", None) is not fallback
                  and not isinstance(route, Mount)]
        allowed = [method for method in METHODS if any(
            route.matches({**request.scope, "method": method})[0] == Match.FULL
            for route in routes)]
        path = echoed(request.url.path)
        if allowed:
            return JSONResponse(error_body(f"{path} takes {', '.join(allowed)}, not "
                                           f"{request.method}", "invalid_request_error",
                                           code="method_not_allowed"),
                                status_code=405, headers={"Allow": ", ".join(allowed)})
        instead = INSTEAD.get(path, "; it serves /v1/chat/completions, /v1/models and "
                                    "/v1/corrections")
        return JSONResponse(error_body(f"this server has no {path}{instead}",
                                       "invalid_request_error", code="not_found"),
                            status_code=404)

    server.add_api_route(FALLBACK, fallback, methods=METHODS, include_in_schema=False)


__all__ = ["add_api_fallback"]
