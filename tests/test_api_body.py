"""How the API reads a request body (``app/api_body.py``): encodings it can't read and JSON that
says two things are refused in words that say what to send."""

from __future__ import annotations

import gzip
import json

import httpx
import pytest

from api_serving import ASK, JSON, engine, served  # noqa: F401 (fixtures)

BODY = json.dumps({"model": "plain", "messages": ASK}).encode()


@pytest.mark.parametrize("encoding, body", [("gzip", gzip.compress(BODY)), ("br", BODY)])
def test_a_compressed_body_is_refused_naming_the_encoding(served, encoding, body) -> None:
    response = httpx.post(f"{served.base_url}/chat/completions", content=body,
                          headers={**JSON, "Content-Encoding": encoding})
    assert response.status_code == 415
    assert response.json()["error"] == {
        "message": f"the body is sent with Content-Encoding: {encoding}; this server reads it "
                   "only uncompressed: leave Content-Encoding out", "type": "invalid_request_error",
        "param": None, "code": "unsupported_content_encoding"}
    identity = httpx.post(f"{served.base_url}/chat/completions", content=BODY,
                          headers={**JSON, "Content-Encoding": "identity"})
    assert identity.status_code == 200


@pytest.mark.parametrize("body, key", [
    ('{"model": "plain", "model": "prompt", "messages": []}', "model"),
    ('{"model": "plain", "messages": [{"role": "user", "content": "a", "content": "b"}]}',
     "content"),
])
def test_a_key_given_twice_is_refused_not_read_as_its_last_value(served, body, key) -> None:
    """A proxy that checks the first ``model`` must not let the last one through unseen."""
    response = httpx.post(f"{served.base_url}/chat/completions", content=body, headers=JSON)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_json"
    assert error["message"] == (f'the request body gives the key "{key}" twice in one object; '
                                "send each key once")
