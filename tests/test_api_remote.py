"""The API over a variant that generates on a remote server, asked with the real ``openai``
client: what our callers are told when the server misbehaves. The remote is a small stdlib
HTTP server that misbehaves on purpose; our API runs on uvicorn in this process."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import openai
import pytest

from tests.api_serving import Served
from tests.serving import QuietHandler, chatbot_serve, http_server
from tests.test_remote import bot_engine, write_bot_config

ASK = [{"role": "user", "content": "Hello"}]


@contextmanager
def api_over(handler: type[QuietHandler], root: Path,
             monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Served, object]]:
    """(our API, its engine) over a remote answering with ``handler``."""
    with http_server(handler) as url:
        engine = bot_engine(write_bot_config(root, url), monkeypatch)
        served = Served(engine)
        try:
            yield served, engine
        finally:
            served.stop()


class RateLimitedForAnHour(QuietHandler):
    def do_POST(self) -> None:
        if self.asked_to_chat():
            self.reply(429, b'{"error": {"message": "Rate limit reached"}}', "application/json",
                       {"Retry-After": "3600"})


def test_a_remote_asking_for_a_long_wait_passes_it_on_bounded(tmp_path, monkeypatch) -> None:
    """A backend that asks for an hour told our callers to retry after 1 s: they came back
    at once, again and again, each time to the same refusal."""
    with api_over(RateLimitedForAnHour, tmp_path, monkeypatch) as (served, _):
        with pytest.raises(openai.InternalServerError) as refused:
            served.client().chat.completions.create(model="prompt", messages=ASK)
    error = refused.value
    assert error.status_code == 503 and error.body["code"] == "backend_busy"
    assert error.response.headers["retry-after"] == "300"  # the most we ask a caller to wait


def test_every_api_response_carries_a_request_id_the_error_log_names(tmp_path) -> None:
    """No response said which request it was: a user's report of a failure could not be
    matched to the server log's line."""
    with http_server(RateLimitedForAnHour) as url, chatbot_serve(
            write_bot_config(tmp_path, url), data_dir=tmp_path / "data",
            env={"TEST_REMOTE_KEY": "k"}) as (ours, server):
        client = openai.OpenAI(base_url=f"{ours}/v1", api_key="unused", max_retries=0)
        listed = client.models.with_raw_response.list()
        with pytest.raises(openai.InternalServerError) as refused:
            client.chat.completions.create(model="prompt", messages=ASK)
        missing = httpx.get(f"{ours}/v1/nothing-here")
        server.terminate()
        log = server.communicate(timeout=30)[0]
    ids = [listed.headers["x-request-id"], refused.value.request_id,
           missing.headers["x-request-id"]]
    assert all(re.fullmatch(r"req_[0-9a-f]{32}", i) for i in ids) and len(set(ids)) == 3
    assert re.search(rf"chat completion \(request {ids[1]}\) failed: backend 'remote' .* is "
                     "busy", log)
