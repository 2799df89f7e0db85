"""Reading the body of an API request: JSON only, within a size, as it arrives.

Every ``/v1`` route and ``/tokenize`` read their bodies through ``read_json``; ``RequestLimits``
says how much one request may send (``server.max_request_messages``, ``server.max_request_chars``).
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass

from starlette.requests import ClientDisconnect, Request

from app.api_schema import RequestError, echoed

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")

MAX_BODY_BYTES = 2**20
"""The body a request without a larger allowance (``RequestLimits.body_bytes``) may send."""
BYTES_PER_CHAR = 12
"""The most bytes one character takes in JSON: a character beyond the Basic Multilingual Plane
escaped as a surrogate pair, ``\\ud83d\\ude00``."""


async def read_json(request: Request, expected: str, max_bytes: int = MAX_BODY_BYTES) -> object:
    """The request's JSON body, with lone surrogates (``"\\ud800"`` escapes, which no tokenizer
    or log can store) dropped from its strings; ``expected`` says what the body should be.

    A body not sent as ``application/json`` is refused: a page on another site can make a
    visitor's browser send a form or plain text, with the visitor's login cookie or to a
    server on the visitor's own machine, but not JSON. So is one over ``max_bytes``, as it
    arrives: a stranger's gigabyte is never held in memory to be parsed; and one compressed,
    or whose object gives a key twice.
    """
    kind = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if kind != "application/json":
        raise RequestError(f"the body must be sent as JSON, with the header 'Content-Type: "
                           f"application/json' (this request said {kind or 'nothing'!r})",
                           code="unsupported_media_type", status=415)
    _refuse_compressed(request.headers.get("content-encoding", ""))
    try:
        body = json.loads(await _body_within(request, max_bytes), parse_int=_whole_number,
                          object_pairs_hook=_one_value_per_key)
        return _without_surrogates(body)
    except ValueError as exc:
        raise RequestError(f"the request body is not valid JSON ({exc}); send {expected}",
                           code="invalid_json") from None
    except RecursionError:  # Python's parser gives up at about 1,000 levels
        raise RequestError("the request body nests JSON arrays or objects too deeply to read; "
                           f"send {expected}", code="invalid_json") from None
    except ClientDisconnect:  # the client's failure, not the server's: no traceback logged
        raise RequestError("the client closed the connection before it sent the whole body",
                           code="client_closed_request", status=499) from None


def _refuse_compressed(encoding: str) -> None:
    """A compressed body would reach the JSON parser as bytes it can't read (the error would
    be about UTF-8), and unpacked it could be many times the size allowed: it is refused."""
    if any(part.strip().lower() not in ("", "identity") for part in encoding.split(",")):
        raise RequestError(f"the body is sent with Content-Encoding: {echoed(encoding)}; this "
                           "server reads it only uncompressed: leave Content-Encoding out",
                           code="unsupported_content_encoding", status=415)


def _one_value_per_key(pairs: list[tuple[str, object]]) -> dict:
    """A JSON object of the body. A key given twice is refused, not read as its last value as
    Python's json does: a proxy in front that read the first would not have checked the value
    used. Keys are compared as they are used, lone surrogates dropped."""
    seen: dict = {}
    for key, value in pairs:
        key = _LONE_SURROGATE.sub("", key)
        if key in seen:
            raise RequestError(f"the request body gives the key {json.dumps(echoed(key))} "
                               "twice in one object; send each key once", code="invalid_json")
        seen[key] = value
    return seen


async def _body_within(request: Request, max_bytes: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(max_bytes)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise _too_large(max_bytes)
        chunks.append(chunk)
    return b"".join(chunks)


def _whole_number(digits: str) -> int:
    """A JSON integer. Python converts at most ``sys.get_int_max_str_digits()`` digits, and its
    error says to raise that limit: advice for this server's programmers, not its clients."""
    size = len(digits.lstrip("-"))
    if size > sys.get_int_max_str_digits():
        raise RequestError(f"the request body has a number of {size:,} digits; no field "
                           "takes one that long", code="invalid_json")
    return int(digits)


def _too_large(max_bytes: int) -> RequestError:
    return RequestError(f"the request body is over {max_bytes:,} bytes, more than this server "
                        "reads; send less", code="request_too_large", status=413)


def _without_surrogates(value: object) -> object:
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("", value)
    if isinstance(value, list):
        return [_without_surrogates(item) for item in value]
    if isinstance(value, dict):
        return {key: _without_surrogates(item) for key, item in value.items()}  # keys: read
    return value


@dataclass(frozen=True)
class RequestLimits:
    """How much one request may send (``server.max_request_messages`` and
    ``server.max_request_chars``), so one client can't tie up the server."""

    messages: int
    chars: int

    @property
    def body_bytes(self) -> int:
        """The body that can hold ``chars`` characters of messages, however they are encoded,
        and the JSON around them."""
        return self.chars * BYTES_PER_CHAR + MAX_BODY_BYTES


def body_bytes(limits: RequestLimits | None) -> int:
    """The body a request under ``limits`` may send."""
    return limits.body_bytes if limits is not None else MAX_BODY_BYTES
