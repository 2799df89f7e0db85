"""When a request to a remote server is tried again, and after how long: one that could not
connect, found the server busy (429, 503) or a gateway in front of it failing (502, 504), after
the wait the server's ``Retry-After`` asks for, else a short backoff. ``chatbot.remote`` retries
only before an answer's first piece, so an answer is never repeated.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

import openai

from chatbot.remote_model import BUSY, GATEWAY_ERRORS

RETRIES = 3
"""Retries of a request that could not connect, found the server busy or a gateway failing."""
BACKOFF_S = (0.5, 1.0, 2.0)
"""Waits before each retry, unless the server's ``Retry-After`` asks for another."""
MAX_WAIT_S = 8.0
"""The longest ``Retry-After`` waited for: a server asking for more is not retried."""


def worth_retrying(exc: openai.APIError) -> bool:
    if isinstance(exc, openai.APIConnectionError):
        return not isinstance(exc, openai.APITimeoutError)
    return getattr(exc, "status_code", None) in BUSY + GATEWAY_ERRORS


def asked_wait_s(exc: openai.APIError) -> float | None:
    """The seconds the server's ``Retry-After`` asks for, if it sent one."""
    response = getattr(exc, "response", None)
    return retry_after_s(response.headers.get("retry-after")) if response is not None else None


def wait_before_retry(exc: openai.APIError, attempt: int) -> float:
    after = asked_wait_s(exc)
    return BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)] if after is None else after


def retry_after_s(value: str | None) -> float | None:
    """Seconds a ``Retry-After`` asks for: a number of seconds, or an HTTP date (RFC 9110), as
    proxies and gateways send it; ``None`` for none or one that is neither."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        when = when if when.tzinfo else when.replace(tzinfo=timezone.utc)
        seconds = (when - datetime.now(timezone.utc)).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None
