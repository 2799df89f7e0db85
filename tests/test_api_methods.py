"""The HTTP methods the API's routes take beyond their own, on a real server: HEAD where GET is
served, and a browser's CORS preflight from another site's page."""

from __future__ import annotations

import httpx
import pytest

from server_app import serving


@pytest.fixture
def api_url(echo, tmp_path):
    from app.server import create_server_app
    from chatbot.config import BotConfig
    from chatbot.engine import Engine
    from chatbot.variants import Variant

    engine = Engine({"plain": Variant("plain", "base", "plain", False)}, lambda m: echo)
    config = BotConfig.model_validate({"data_dir": str(tmp_path), "logging": {"enabled": False}})
    with serving(create_server_app(engine, config)) as url:
        yield url + "v1"


def test_head_is_answered_where_get_is_with_its_headers_and_no_body(api_url) -> None:
    """HTTP servers must take HEAD wherever they take GET (uptime checks send it)."""
    for path in ("/models", "/models/plain"):
        got, head = httpx.get(api_url + path), httpx.head(api_url + path)
        assert head.status_code == got.status_code == 200
        assert head.content == b"" and head.headers["content-type"] == "application/json"
    wrong = httpx.get(api_url + "/chat/completions")
    assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"
    assert httpx.post(api_url + "/models").headers["allow"] == "GET, HEAD"


def test_a_browsers_preflight_from_another_site_is_refused_saying_why(api_url) -> None:
    """No CORS headers: another site's page may not read this server's answers, and a
    developer trying it is told so, not that OPTIONS is the wrong method."""
    preflight = httpx.options(api_url + "/chat/completions", headers={
        "Origin": "https://chat.example.com", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type"})
    assert preflight.status_code == 403
    assert "access-control-allow-origin" not in preflight.headers
    assert preflight.json()["error"] == {
        "message": "this server does not answer pages of other sites in a browser (Origin: "
                   "https://chat.example.com): call /v1/chat/completions from a program or "
                   "your own server instead", "type": "invalid_request_error", "param": None,
        "code": "cross_origin_request"}
    plain = httpx.options(api_url + "/chat/completions")  # not a browser's preflight
    assert plain.status_code == 405 and plain.headers["allow"] == "POST"
