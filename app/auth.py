"""Who may use the server. The rule, as the docs state it:

    When a login or an API key is configured, every route (the web UI, the Gradio API under
    /gradio_api and the OpenAI-compatible API under /v1) requires one of them: the API key as
    ``Authorization: Bearer KEY``, or the session of the login page (a user's password, or the
    API key as the password). Only the login page and the files it loads stay open.
    With neither configured, everything is open, and ``chatbot serve`` listens only on a
    loopback address unless started with ``--insecure``.

``RequireCredential`` applies the rule in front of every route; ``app.ui.mount_ui`` gives
Gradio the same login check and the same idea of who is calling.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import re
import time
import unicodedata
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api_schema import error_body, is_api_path
from chatbot.config import BotConfig
from chatbot.config_file import read_auth_file
from chatbot.errors import ConfigError

API_KEY_USER = "api-key"
"""The user name of a request that came with the right bearer key."""

OPEN_PATHS = ("/", "/login", "/login/", "/logout", "/favicon.ico", "/theme.css")
OPEN_PREFIXES = ("/assets/", "/static/")
"""The login page and what it loads: Gradio serves the login form at ``/`` to anonymous
visitors and the app there to logged-in ones."""

MAX_FAILED_LOGINS = 10
"""Failed logins and wrong API keys one address may send within ``LOGIN_WINDOW_S``, together
(the key is a login password too): room for typos, too few to guess a password or a key."""
LOGIN_WINDOW_S = 15 * 60
REMEMBERED_ADDRESSES = 10_000
"""Addresses whose recent failures ``FailedAttempts`` keeps: those that tried last. One who
could push a guesser's address out has that many addresses, each with its own guesses."""

Caller = Callable[[HTTPConnection], Awaitable[str | None]]
"""Who is calling: a user name, ``API_KEY_USER``, or None for nobody."""


@dataclass(frozen=True)
class Credentials:
    """The configured logins (user to password) and API key."""

    logins: dict[str, str] = field(default_factory=dict)
    api_key: str | None = None
    api_key_env: str = "CHATBOT_API_KEY"

    @classmethod
    def from_config(cls, config: BotConfig) -> Credentials:
        """The key without the spaces or line break around it (an env file saved on Windows
        ends it with ``\\r``), which a bearer header can't carry."""
        key = os.environ.get(config.server.api_key_env, "").strip() or None
        return cls(dict(read_auth(config) or []), key, config.server.api_key_env)

    @property
    def required(self) -> bool:
        return bool(self.logins or self.api_key)

    def login_ok(self, user: str, password: str) -> bool:
        """The login page's check: a configured user's password, or the API key as password
        under a name that is not a configured user's (the name typed is recorded as the author
        of corrections: the key must not sign as someone else)."""
        expected = self.logins.get(user)
        if expected is not None:
            return _same(password, expected)
        if any(_seen_as(user) == _seen_as(known) for known in self.logins):
            return False  # "Ana", "ana" with a zero-width space: read as the user "ana"
        return self.api_key is not None and _same(password, self.api_key)

    def key_ok(self, connection: HTTPConnection) -> bool:
        given = bearer_key(connection)
        return self.api_key is not None and given is not None and _same(given, self.api_key)

    def caller(self, connection: HTTPConnection, logged_in: str | None) -> str | None:
        """The logged-in user, else ``API_KEY_USER`` for the right bearer key, else None."""
        return logged_in or (API_KEY_USER if self.key_ok(connection) else None)

    def describe(self, url: str) -> str:
        """What ``chatbot serve`` prints about who may use ``url``."""
        if not self.required:
            return (f"open: no login and no API key are set, so anyone who reaches {url} can "
                    "use the web UI, /gradio_api and /v1")
        ways = []
        if self.logins:
            ways.append("log in as its one user" if len(self.logins) == 1
                        else f"log in as one of its {len(self.logins)} users")
        if self.api_key:
            ways.append(f"send ${self.api_key_env} as 'Authorization: Bearer KEY' (or as the "
                        "login password)")
        return ("protected: the web UI, /gradio_api and /v1 all require a credential: "
                + " or ".join(ways))


def bearer_key(connection: HTTPConnection) -> str | None:
    """The key of an ``Authorization: Bearer KEY`` header; None without one (or with another
    scheme, such as the Basic one a proxy's own login passes on)."""
    scheme, _, given = connection.headers.get("authorization", "").partition(" ")
    return given.strip() if scheme.lower() == "bearer" else None


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def _seen_as(name: str) -> str:
    """The name as a reader of the Review tab sees it: compatibility forms folded (full-width
    letters), invisible characters dropped, case and surrounding spaces ignored."""
    shown = unicodedata.normalize("NFKC", name)
    return "".join(ch for ch in shown if unicodedata.category(ch) != "Cf").strip().casefold()


def check_exposure(host: str, credentials: Credentials, insecure: bool) -> None:
    """Refuse to listen beyond this machine with nothing protecting the bot."""
    if credentials.required or insecure or is_loopback(host):
        return
    raise ConfigError(
        f"refusing to listen on {host} with no login and no API key: anyone who can reach it "
        "could read the conversation log and change the documents and variants. Set "
        f"CHATBOT_USER and CHATBOT_PASSWORD (or server.auth_file) or ${credentials.api_key_env}, "
        "use --host 127.0.0.1, or pass --insecure to serve it open anyway")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class FailedAttempts:
    """Each address's failed logins and wrong API keys of the last ``window`` seconds: one that
    has ``limit`` of them waits until the oldest is that old. ``LoginThrottle`` and
    ``RequireCredential`` share one: the key is a login password too, so a guesser of it has
    one allowance, whichever door it knocks at."""

    def __init__(self, limit: int = MAX_FAILED_LOGINS, window: float = LOGIN_WINDOW_S) -> None:
        self.limit, self.window = limit, window
        self.failures: OrderedDict[str, deque[float]] = OrderedDict()

    def wait_s(self, address: str) -> int:
        """Seconds ``address`` must wait before it may try again; 0 when it may now."""
        recent = self._recent(address)
        if len(recent) < self.limit:
            return 0
        return int(recent[0] + self.window - time.monotonic()) + 1

    def record(self, address: str) -> None:
        """One more failure of ``address``. Past ``REMEMBERED_ADDRESSES`` the address that
        tried longest ago is forgotten: strangers' addresses can't fill the memory, and no
        request waits on a sweep through them."""
        failures = self._recent(address)
        failures.append(time.monotonic())
        self.failures[address] = failures  # the newest last
        while len(self.failures) > REMEMBERED_ADDRESSES:
            self.failures.popitem(last=False)

    def _recent(self, address: str) -> deque[float]:
        """The address's failures within the window; an address with none is not kept, so
        the right key's requests take no room."""
        failures = self.failures.pop(address, None) or deque()
        _forget_before(failures, time.monotonic() - self.window)
        if failures:
            self.failures[address] = failures  # the newest last
        return failures


def too_many_failures(wait: int) -> str:
    """The refusal of an address over its limit, at the login page and the API alike: either
    kind of failure may have brought it there."""
    return f"too many failed logins or wrong API keys from this address; try again in {wait} s"


def client_address(scope: Scope) -> str:
    """The caller's address (the proxy's ``X-Forwarded-For`` where uvicorn trusts it)."""
    return (scope.get("client") or ("unknown",))[0]


class RequireCredential:
    """ASGI middleware: with credentials configured, a request that is not on the login page
    and whose ``caller`` is nobody gets a 401 (OpenAI's error shape under ``/v1``). A wrong
    bearer key counts in ``attempts``; from an address over its limit, a bearer key gets a 429
    without being checked, so guessing it goes no faster than guessing a password."""

    def __init__(self, app: ASGIApp, credentials: Credentials, caller: Caller,
                 attempts: FailedAttempts | None = None) -> None:
        self.app = app
        self.credentials = credentials
        self.caller = caller
        self.attempts = attempts or FailedAttempts()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or not self.credentials.required:
            return await self.app(scope, receive, send)
        connection = HTTPConnection(scope)
        address = client_address(scope)
        tries_key = self.credentials.api_key is not None and bearer_key(connection) is not None
        wait = self.attempts.wait_s(address) if tries_key else 0
        if wait and scope["type"] == "websocket":
            return await send({"type": "websocket.close", "code": 1008})
        if wait:
            return await _too_many_keys(connection, wait)(scope, receive, send)
        if _is_open(scope["path"]):
            if scope["path"] == "/" and await self.caller(connection) is None:
                if tries_key:  # the page shows whether the key was right
                    self.attempts.record(address)
                send = _anonymous_login_page(send)
            return await self.app(scope, receive, send)
        who = await self.caller(connection)
        if who is not None:
            scope.setdefault("state", {})["caller"] = who  # routes read request.state.caller
            return await self.app(scope, receive, send)
        if tries_key:
            self.attempts.record(address)
        if scope["type"] == "websocket":
            return await send({"type": "websocket.close", "code": 1008})
        await _refusal(connection)(scope, receive, send)


class LoginThrottle:
    """ASGI middleware: an address over the limit of its ``attempts`` gets a 429 from
    ``POST /login``, and each failed login counts. Gradio's login route alone answers wrong
    passwords as fast as they come."""

    def __init__(self, app: ASGIApp, attempts: FailedAttempts | None = None) -> None:
        self.app = app
        self.attempts = attempts or FailedAttempts()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] != "http" or scope["method"] != "POST"
                or scope["path"].rstrip("/") != "/login"):
            return await self.app(scope, receive, send)
        address = client_address(scope)
        wait = self.attempts.wait_s(address)
        if wait:
            refusal = JSONResponse({"detail": too_many_failures(wait)},
                                   status_code=429, headers={"Retry-After": str(wait)})
            return await refusal(scope, receive, send)

        async def count_failure(message: dict) -> None:
            if message["type"] == "http.response.start" and message["status"] == 400:
                self.attempts.record(address)  # Gradio's "incorrect credentials"
            await send(message)

        await self.app(scope, receive, count_failure)


def _forget_before(times: deque[float], horizon: float) -> None:
    while times and times[0] <= horizon:
        times.popleft()


def _is_open(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


LOGIN_PAGE_API = re.compile(rb"<script>window\.gradio_api_info = .*?;</script>", re.DOTALL)
# Gradio's login form shows nothing when ``LoginThrottle`` refuses an address (a 429): this
# script, added to the login page, shows the refusal and how long to wait.
LOGIN_REFUSAL_SCRIPT = rb"""<script>
(() => {
  const fetchFromPage = window.fetch;
  window.fetch = async (...args) => {
    const response = await fetchFromPage(...args);
    const asked = args[0] instanceof Request ? args[0].url : String(args[0]);
    const url = new URL(asked, location.href);
    if (response.status === 429 && /\/login\/?$/.test(url.pathname)) {
      const body = await response.clone().json().catch(() => ({}));
      let note = document.getElementById("cb-login-refused");
      if (!note) {
        note = document.createElement("p");
        note.id = "cb-login-refused";
        note.setAttribute("role", "alert");
        const password = document.querySelector('input[type="password"]');
        (password ? password.closest("label, .block, div") : document.body).after(note);
      }
      note.textContent = body.detail || "Too many failed logins or wrong API keys; wait.";
    }
    return response;
  };
})();
</script>
<style>#cb-login-refused { color: var(--error-text-color, #b91c1c); }</style>"""


def _anonymous_login_page(send: Send) -> Send:
    """Gradio's login page carries the app's whole API description (every endpoint and its
    parameters, the variant names, the config's defaults), which its own address refuses to
    strangers: the anonymous visitor gets the page without it, and with the script that
    explains a throttled login."""
    start: dict = {}
    body: list[bytes] = []

    async def rewrite(message: dict) -> None:
        if message["type"] == "http.response.start":
            start.update(message)
            return
        if message["type"] != "http.response.body":
            return await send(message)
        body.append(message.get("body", b""))
        if message.get("more_body"):
            return
        page = LOGIN_PAGE_API.sub(b"<script>window.gradio_api_info = null;</script>",
                                  b"".join(body)).replace(b"</head>",
                                                          LOGIN_REFUSAL_SCRIPT + b"</head>", 1)
        headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
        await send({**start, "headers": [*headers, (b"content-length", b"%d" % len(page))]})
        await send({"type": "http.response.body", "body": page})

    return rewrite


def _refusal(connection: HTTPConnection) -> JSONResponse:
    message = ("the API key is not valid" if "authorization" in connection.headers else
               "this server requires a credential: send the header 'Authorization: Bearer KEY' "
               "with the API key, or log in on the web page")
    headers = {"WWW-Authenticate": "Bearer"}
    if is_api_path(connection.url.path):
        return JSONResponse(error_body(message, "invalid_request_error", None, "invalid_api_key"),
                            status_code=401, headers=headers)
    return JSONResponse({"detail": message}, status_code=401, headers=headers)


def _too_many_keys(connection: HTTPConnection, wait: int) -> JSONResponse:
    """The 429 of a bearer key from an address over its limit; OpenAI clients are told not to
    retry, as every retry within ``wait`` seconds is refused alike."""
    message = too_many_failures(wait)
    headers = {"Retry-After": str(wait)}
    if is_api_path(connection.url.path):
        return JSONResponse(error_body(message, "rate_limit_error", None,
                                       "too_many_failed_attempts"),
                            status_code=429, headers={**headers, "x-should-retry": "false"})
    return JSONResponse({"detail": message}, status_code=429, headers=headers)


def read_auth(config: BotConfig) -> list[tuple[str, str]] | None:
    """Login pairs from ``CHATBOT_USER``/``CHATBOT_PASSWORD`` and ``server.auth_file``;
    ``None`` (no login) when neither is set."""
    pairs = []
    user, password = os.environ.get("CHATBOT_USER"), os.environ.get("CHATBOT_PASSWORD")
    if bool(user) != bool(password):
        raise ConfigError("set both CHATBOT_USER and CHATBOT_PASSWORD for the web login, "
                          "or neither")
    if user:
        pairs.append((user, password))
    if config.server.auth_file:
        pairs += read_auth_file(config.resolve(config.server.auth_file))
    return pairs or None
