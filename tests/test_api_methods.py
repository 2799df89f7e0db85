"""Requests beyond what the API's routes take, on a real server: HEAD where GET is served, a
browser's CORS preflight from another site's page, and OpenAI paths this server has not."""

from __future__ import annotations

import httpx
import openai
import pytest

from server_app import serving


@pytest.fixture(params=[None, "k-123"], ids=["open", "with-key"])
def api_url(request, echo, tmp_path, monkeypatch):
    """The API of a server without a credential, and of one with an API key."""
    from app.server import create_server_app
    from chatbot.config import BotConfig
    from chatbot.engine import Engine
    from chatbot.variants import Variant

    engine = Engine({"plain": Variant("plain", "base", "plain", False)}, lambda m: echo)
    config = BotConfig.model_validate({"data_dir": str(tmp_path), "logging": {"enabled": False}})
    for name in ("CHATBOT_API_KEY", "CHATBOT_USER", "CHATBOT_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    if request.param:
        monkeypatch.setenv("CHATBOT_API_KEY", request.param)
    with serving(create_server_app(engine, config)) as url:
        yield url + "v1", {"Authorization": f"Bearer {request.param}"} if request.param else {}


def test_head_is_answered_where_get_is_with_its_headers_and_no_body(api_url) -> None:
    """HTTP servers must take HEAD wherever they take GET (uptime checks send it)."""
    url, key = api_url
    for path in ("/models", "/models/plain"):
        got, head = httpx.get(url + path, headers=key), httpx.head(url + path, headers=key)
        assert head.status_code == got.status_code == 200
        assert head.content == b"" and head.headers["content-type"] == "application/json"
    wrong = httpx.get(url + "/chat/completions", headers=key)
    assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"
    assert httpx.post(url + "/models", headers=key).headers["allow"] == "GET, HEAD"


def test_a_browsers_preflight_from_another_site_is_refused_saying_why(api_url) -> None:
    """No CORS headers: another site's page may not read this server's answers, and a
    developer trying it is told so, not that OPTIONS is the wrong method, nor (a preflight
    never carries one) to send the key."""
    url, key = api_url
    preflight = httpx.options(url + "/chat/completions", headers={
        "Origin": "https://chat.example.com", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type"})
    assert preflight.status_code == 403
    assert "access-control-allow-origin" not in preflight.headers
    assert preflight.json()["error"] == {
        "message": "this server does not answer pages of other sites in a browser (Origin: "
                   "https://chat.example.com): call /v1/chat/completions from a program or "
                   "your own server instead", "type": "invalid_request_error", "param": None,
        "code": "cross_origin_request"}
    plain = httpx.options(url + "/chat/completions", headers=key)  # not a browser's
    assert plain.status_code == 405 and plain.headers["allow"] == "POST"


def test_a_legacy_completions_client_is_told_to_send_its_prompt_as_a_chat(api_url) -> None:
    url, key = api_url
    api_key = key["Authorization"].removeprefix("Bearer ") if key else "unused"
    client = openai.OpenAI(base_url=url, api_key=api_key, max_retries=0)
    with pytest.raises(openai.NotFoundError) as missing:
        client.completions.create(model="plain", prompt="Say hi")
    assert missing.value.body["message"] == (
        "this server has no /v1/completions (OpenAI's legacy text completions); send the "
        "prompt as the user message of a /v1/chat/completions request")
    long_path = httpx.get(url + "/x" * 5000, headers=key).json()["error"]["message"]
    assert len(long_path) < 300  # a stranger's path is not sent back whole
