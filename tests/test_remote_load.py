"""A remote backend under load: our bot keeps to ``max_concurrency``, retries a busy remote's
429s until they pass, and says so when they don't; our own server refuses a flood with a 429.

Every remote is a real `chatbot serve`, so each 429 and each answer crosses real HTTP.

    .venv/bin/python -m pytest tests/test_remote_load.py
"""

from __future__ import annotations

import math
import re
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from chatbot import remote as remote_module
from chatbot.errors import ModelError
from chatbot.generate import GenerationSettings
from chatbot.logs import now
from tests.serving import QuietHandler, chatbot_serve, http_server
from tests.test_cancellation import talkative_model_dir  # noqa: F401 (a fixture)
from tests.test_remote import bot_engine, remote, write_bot_config  # noqa: F401 (a fixture)
from tests.test_remote import write_remote_config

SERVES_AGAIN_WITHIN_S = 15.0
"""How soon a server whose load is gone must answer again (CI machines are busy)."""


@pytest.fixture(scope="module")
def busy_remote(talkative_model_dir: Path,  # noqa: F811 (the imported fixture)
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """(/v1 URL, logs.sqlite) of a remote that takes one answer at a time and can be kept
    busy: its model never ends an answer before max_tokens."""
    root = tmp_path_factory.mktemp("busy-remote")
    path = write_remote_config(root, talkative_model_dir)
    config = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump(config | {"server": {"max_waiting_answers": 1}}))
    with chatbot_serve(path, data_dir=root / "data") as (url, _):
        yield f"{url}/v1", root / "data" / "logs.sqlite"


def answers_since(log_path: Path, since: str) -> list[tuple[str, str, str]]:
    """(created_at, finished_at, status) of the remote's answers logged from ``since`` on."""
    with sqlite3.connect(log_path) as db:
        return db.execute("SELECT created_at, finished_at, status FROM turns WHERE role = "
                          "'assistant' AND created_at >= ?", (since,)).fetchall()


def most_at_once(spans: list[tuple[str, str, str]]) -> int:
    """The most answers the remote was generating at one moment (one ending as another
    starts, within the log's millisecond, counts as one)."""
    events = sorted([(start, 1) for start, _, _ in spans] + [(end, -1) for _, end, _ in spans])
    running = most = 0
    for _, change in events:  # at equal times -1 sorts first: an end before a start
        running += change
        most = max(most, running)
    return most


def answer_all(engine, count: int, settings: GenerationSettings) -> list:
    """``count`` answers of one engine, all started before any is read."""
    streams = [engine.answer(f"s{i}", f"Question number {i}?", "prompt", settings=settings)
               for i in range(count)]
    return [stream.result() for stream in streams]


@contextmanager
def kept_busy(url: str) -> Iterator[None]:
    """The remote generating one long answer (it stops once the block ends and we hang up)."""
    body = {"model": "echo", "stream": True, "max_tokens": 3000,
            "messages": [{"role": "user", "content": "Talk for a long time."}]}
    with httpx.stream("POST", f"{url}/chat/completions", json=body, timeout=60) as response:
        assert response.status_code == 200
        lines = response.iter_lines()  # held: a collected iterator would close the connection
        next(line for line in lines if '"content": "' in line)
        yield


def ask(url: str) -> openai.types.chat.ChatCompletion:
    client = openai.OpenAI(base_url=url, api_key="none", timeout=30, max_retries=0)
    return client.chat.completions.create(model="echo", max_tokens=4,
                                          messages=[{"role": "user", "content": "Hi"}])


def ask_until_served(url: str) -> openai.types.chat.ChatCompletion:
    """A short answer once the server takes one again; an error after the time allowed."""
    deadline = time.monotonic() + SERVES_AGAIN_WITHIN_S
    while True:
        try:
            return ask(url)
        except openai.RateLimitError:
            assert time.monotonic() < deadline, f"still busy after {SERVES_AGAIN_WITHIN_S} s"
            time.sleep(0.2)


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int | None, float]]:
    """(HTTP status, seconds waited) of every retry the remote generators make."""
    seen: list[tuple[int | None, float]] = []
    real = remote_module.wait_before_retry

    def recorded(exc: openai.APIError, attempt: int) -> float:
        seen.append((getattr(exc, "status_code", None), real(exc, attempt)))
        return seen[-1][1]

    monkeypatch.setattr(remote_module, "wait_before_retry", recorded)
    return seen


def test_no_more_answers_reach_the_remote_than_max_concurrency(remote, tmp_path,  # noqa: F811
                                                               monkeypatch) -> None:
    url, remote_log = remote
    engine = bot_engine(write_bot_config(tmp_path, url), monkeypatch)  # max_concurrency: 2
    started = now()
    replies = answer_all(engine, 6, GenerationSettings(max_new_tokens=32))
    spans = answers_since(remote_log, started)
    assert len(spans) == 6 and {status for _, _, status in spans} == {"complete"}
    assert most_at_once(spans) == 2
    ours = [engine.log.conversation(f"s{i}").turns[-1] for i in range(6)]
    assert [t.status for t in ours] == ["complete"] * 6
    assert [t.text for t in ours] == [r.text for r in replies]


def test_a_busy_remote_is_retried_until_it_answers(busy_remote, tmp_path, monkeypatch,
                                                   waits) -> None:
    url, remote_log = busy_remote
    engine = bot_engine(write_bot_config(tmp_path, url), monkeypatch)  # max_concurrency: 2
    started = now()
    replies = answer_all(engine, 4, GenerationSettings(max_new_tokens=8))
    assert all(r.text for r in replies)
    spans = answers_since(remote_log, started)
    assert len(spans) == 4 and most_at_once(spans) == 1
    assert waits and set(waits) == {(429, 1.0)}  # its Retry-After, honoured


def test_a_remote_busy_beyond_the_retries_is_an_error_naming_the_backend(
        busy_remote, tmp_path, monkeypatch, waits) -> None:
    url, _ = busy_remote
    engine = bot_engine(write_bot_config(tmp_path, url), monkeypatch)
    with kept_busy(url):
        with pytest.raises(ModelError, match=r"^backend 'remote' \(http://127.0.0.1:\d+/v1\) "
                                             r"is still busy \(HTTP 429\) after 3 retries; "
                                             r"lower backends.remote.max_concurrency"):
            engine.answer("s1", "hello", "prompt").result()
    assert waits == [(429, 1.0)] * 3
    assert engine.log.conversation("s1").turns[-1].status == "error"
    ask_until_served(url)


def test_our_api_asks_callers_to_come_back_when_the_remote_stays_busy(busy_remote,
                                                                      tmp_path) -> None:
    """A 503 with Retry-After (OpenAI clients retry it), not a 500 that says not to retry."""
    url, _ = busy_remote
    with chatbot_serve(write_bot_config(tmp_path, url), data_dir=tmp_path / "data") as (ours, _):
        client = openai.OpenAI(base_url=f"{ours}/v1", api_key="unused", max_retries=0,
                               timeout=60)
        with kept_busy(url), pytest.raises(openai.InternalServerError) as refused:
            client.chat.completions.create(model="prompt",
                                           messages=[{"role": "user", "content": "Hi"}])
    error = refused.value
    assert error.status_code == 503 and error.response.headers["retry-after"] == "1"
    assert error.body["code"] == "backend_busy"
    assert error.body["message"].startswith("backend 'remote' is still busy (HTTP 429) after 3 "
                                            "retries")
    ask_until_served(url)


def test_our_server_refuses_a_flood_with_429_and_serves_again_after_it(busy_remote) -> None:
    url, _ = busy_remote
    with kept_busy(url):
        with pytest.raises(openai.RateLimitError) as refused:
            ask(url)
    error = refused.value
    assert error.status_code == 429 and error.response.headers["retry-after"] == "1"
    assert error.body["code"] == "server_busy" and error.body["type"] == "rate_limit_error"
    assert "server.max_waiting_answers" in error.body["message"]
    assert ask_until_served(url).choices[0].finish_reason == "length"


def test_a_retry_after_given_as_a_date_is_honoured(tmp_path, monkeypatch, waits) -> None:
    """Retry-After may be an HTTP date (RFC 9110), as proxies and gateways send it: the bot
    waits until then, instead of spending its retries within the backoff's 3.5 s."""
    from email.utils import formatdate

    from tests.test_remote import events

    busy_until: list[float] = []  # set at the first request, in whole seconds like the date

    class Restarting(QuietHandler):
        @staticmethod
        def busy_until() -> float:
            if not busy_until:
                busy_until.append(math.ceil(time.time()) + 5)  # 5 to 6 s on
            return busy_until[0]

        def do_POST(self) -> None:
            if not self.asked_to_chat():
                return
            if time.time() < self.busy_until():
                self.reply(503, headers={"Retry-After": formatdate(busy_until[0], usegmt=True)})
            else:
                body = events(("Back again", "stop"))
                self.reply(200, body, "text/event-stream")

    with http_server(Restarting) as url:
        engine = bot_engine(write_bot_config(tmp_path, url), monkeypatch)
        assert engine.answer("s1", "hello", "prompt").result().text == "Back again"
    assert len(waits) == 1 and waits[0][0] == 503 and 3.5 < waits[0][1] <= 6


def test_a_server_asking_to_wait_longer_than_the_bot_waits_is_told_at_once(
        tmp_path, monkeypatch, waits) -> None:
    """A rate limit that asks for an hour was retried after 8 s three times: the user waited
    24 s for the same refusal, told to lower max_concurrency, without the server's words."""
    asked: list[str] = []

    class RateLimited(QuietHandler):
        def do_POST(self) -> None:
            if self.asked_to_chat():
                asked.append(self.path)
                self.reply(429, b'{"error": {"message": "Rate limit reached for requests"}}',
                           "application/json", {"Retry-After": "3600"})

    with http_server(RateLimited) as url:
        engine = bot_engine(write_bot_config(tmp_path, url), monkeypatch)
        said = (rf"^backend 'remote' \({re.escape(url)}\) is busy \(HTTP 429: Rate limit "
                r"reached for requests\) and asks to be tried again in 3600 s, longer than "
                r"the bot waits \(8 s\); ask again later, or check the server's rate limits$")
        with pytest.raises(ModelError, match=said) as caught:
            engine.answer("s1", "hello", "prompt").result()
    assert caught.value.busy and len(asked) == 1 and waits == []
    assert engine.log.conversation("s1").turns[-1].status == "error"


@contextmanager
def behind_a_gateway(failures: int, status: int, retry_after: str | None) -> Iterator[str]:
    """The /v1 URL of a proxy whose first ``failures`` answers are ``status`` (the server
    behind it down or starting: nginx's 502, a load balancer's 504), then the answer."""
    from tests.test_remote import events

    failed: list[int] = []

    class Gateway(QuietHandler):
        def do_POST(self) -> None:
            if not self.asked_to_chat():
                return
            if len(failed) < failures:
                failed.append(status)
                page = f"<html><body><h1>{status}</h1>nginx</body></html>".encode()
                self.reply(status, page, "text/html",
                           {"Retry-After": retry_after} if retry_after is not None else None)
                return
            body = events(("Back again", "stop"))
            self.reply(200, body, "text/event-stream")

    with http_server(Gateway) as url:
        yield url


@pytest.mark.parametrize("status, retry_after, waited", [(502, None, [0.5, 1.0]),
                                                          (504, "1", [1.0, 1.0])])
def test_a_gateway_error_is_retried_until_the_server_answers(tmp_path, monkeypatch, waits,
                                                             status, retry_after,
                                                             waited) -> None:
    with behind_a_gateway(2, status, retry_after) as url:
        engine = bot_engine(write_bot_config(tmp_path, url), monkeypatch)
        assert engine.answer("s1", "hello", "prompt").result().text == "Back again"
    assert waits == [(status, seconds) for seconds in waited]


@pytest.mark.parametrize("status, name", [(502, "Bad Gateway"), (504, "Gateway Timeout")])
def test_a_gateway_error_beyond_the_retries_names_the_server_and_the_status(
        tmp_path, monkeypatch, waits, status, name) -> None:
    with behind_a_gateway(10, status, "0") as url:
        engine = bot_engine(write_bot_config(tmp_path, url), monkeypatch)
        said = (rf"^backend 'remote' \({re.escape(url)}\) answered HTTP {status} \({name}\) "
                r"after 3 retries: the server behind it is down, starting or overloaded; check "
                r"that it is running, and its log$")
        with pytest.raises(ModelError, match=said) as caught:
            engine.answer("s1", "hello", "prompt").result()
    assert caught.value.busy  # our API asks its callers to come back (a 503, Retry-After)
    assert waits == [(status, 0.0)] * 3
    assert engine.log.conversation("s1").turns[-1].status == "error"
