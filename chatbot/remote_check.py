"""Whether a remote backend would serve the models asked of it, from one look at its
``/v1/models``: ``chatbot serve`` warns of a problem at start (``OpenAIGenerator.server_problem``)
and ``chatbot config check`` reports it, one line each, naming the setting to fix.

    problems = backend_problems("gpu", "http://gpu-box:8000/v1", http.get,
                                {"qwen2.5:7b": "variants.prompt.model"}, key_setting(...))
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

import httpx

from chatbot.errors import ConfigError


def backend_problems(name: str, base_url: str, get: Callable[[str], httpx.Response],
                     models: Mapping[str, str], key: str) -> list[str]:
    """What would fail the answers of ``models`` (the served name -> the setting that names
    it), asked of the server once with ``get(url)``: the server unreachable, ``key`` (the
    setting of the API key, ``key_setting``) refused, a redirect that would turn chat requests
    into GETs, no ``/models`` (a ``base_url`` without ``/v1``), an error status (a proxy with
    no server behind it), an answer that is no model list, a model it does not list. None where
    it lists the models, or lists none (it can't tell)."""
    where = f"backend {name!r} ({base_url})"
    try:
        response = get(f"{base_url}/models")
    except httpx.TransportError as exc:
        return [f"{where} is unreachable ({type(exc).__name__}: {exc}); check that the server "
                f"is running and backends.{name}.base_url"]
    if moved := _method_changing_redirect(response):
        status, moved_to = moved
        return [f"{where} redirects to {moved_to} (HTTP {status}), which turns a chat request's "
                f"POST into a GET that servers refuse; set backends.{name}.base_url to "
                f"{moved_to}"]
    status = response.status_code
    if status in (401, 403):
        return [f"{where} refused the API key (HTTP {status}); check {key}"]
    if status == 404:
        return [f"{where} has no /models (HTTP 404); check that backends.{name}.base_url is "
                "the server's /v1 URL"]
    if not response.is_success:
        return [f"{where} answered /models with HTTP {status} ({response.reason_phrase}); "
                "check that the server is running, and its log"]
    served = _model_ids(response)
    if served is None:
        kind = response.headers.get("content-type", "no content type").split(";")[0]
        return [f"{where} answered /models with no model list ({kind}); check that "
                f"backends.{name}.base_url is the server's /v1 URL"]
    listed = ", ".join(served[:10]) + (", ..." if len(served) > 10 else "")
    return [f"{where} does not list model {model!r} at /v1/models (it lists: {listed}); check "
            f"{setting}" for model, setting in models.items()
            if served and not {model, f"{model}:latest"} & set(served)]  # Ollama's tag


def _method_changing_redirect(response: httpx.Response) -> tuple[int, str] | None:
    """(status, base URL it leads to) of a redirect of ``/models`` that would turn a POST into
    a GET (301, 302, 303: an http:// URL of a server behind https), followed or not."""
    for hop in [*response.history, response]:
        if hop.status_code in (301, 302, 303) and "location" in hop.headers:
            return hop.status_code, str(hop.url.join(hop.headers["location"])).removesuffix(
                "/models")
    return None


def backend_key(backend: str, env: str | None) -> str | None:
    """The API key in ``$env`` without the white space around it (a secret made from a file
    ends in a line break, an env file may end lines in CRLF); ``None`` where it is unset or
    empty. A character an HTTP header can't carry is a ``ConfigError`` that names where it is,
    never the key."""
    key = (os.environ.get(env) or "").strip() if env else ""
    for position, char in enumerate(key, 1):
        if not " " <= char <= "~":
            raise ConfigError(f"${env} (backends.{backend}.api_key_env) holds a character an "
                              f"HTTP header can't carry (U+{ord(char):04X} at position "
                              f"{position}); set it to the key alone")
    return key or None


def key_setting(backend: str, env: str | None, sent: bool, unset: str) -> str:
    """The setting to check when the server refuses the key; where none was sent for want of
    the variable, ``unset`` says so (``it was not set when the bot started``)."""
    if not env:
        return f"backends.{backend}.api_key_env (none is set)"
    if not sent:
        return f"${env} (backends.{backend}.api_key_env): {unset}, so no key was sent"
    return f"${env} (backends.{backend}.api_key_env)"


def model_cards(response: httpx.Response) -> list[dict] | None:
    """The model objects of an OpenAI model list (``{"data": [{"id": ...}, ...]}``), or None
    for an answer that is not one (a web page, a list of mere names): the one reading of a
    server's ``/models`` that ``config check``, ``serve`` and ``adapters push`` share."""
    try:
        cards = response.json().get("data")
    except (ValueError, AttributeError):
        return None
    if not isinstance(cards, list) or not all(isinstance(card, dict) for card in cards):
        return None
    return cards


def _model_ids(response: httpx.Response) -> list[str] | None:
    """The ids of the models listed, or None for an answer that is no model list."""
    cards = model_cards(response)
    if cards is None:
        return None
    return [card["id"] for card in cards if isinstance(card.get("id"), str)]
