"""The API over a variant that generates on a remote server, asked with the real ``openai``
client: what our callers are told when the server misbehaves. The remote is a small stdlib
HTTP server that misbehaves on purpose; our API runs on uvicorn in this process, or as a whole
`chatbot serve` where its middleware or log is what is tested."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from tests.api_serving import Served
from tests.serving import QuietHandler, chatbot_serve, http_server
from tests.test_remote import bot_engine, events, passages, write_bot_config

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


class GatewayFindsItStarting(QuietHandler):
    def do_POST(self) -> None:
        if self.asked_to_chat():
            self.reply(502, b"<html><body><h1>502</h1>nginx</body></html>", "text/html",
                       {"Retry-After": "2"})


def test_a_gateways_retry_after_is_passed_on_too(tmp_path, monkeypatch) -> None:
    """A proxy that finds the server still starting (502) and says when to come back had its
    word dropped for Retry-After: 1, as a busy server's was."""
    with api_over(GatewayFindsItStarting, tmp_path, monkeypatch) as (served, _):
        with pytest.raises(openai.InternalServerError) as refused:
            served.client().chat.completions.create(model="prompt", messages=ASK)
    error = refused.value
    assert error.status_code == 503 and error.response.headers["retry-after"] == "2"


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


def test_a_callers_own_well_formed_request_id_is_kept_and_logged(tmp_path) -> None:
    """A proxy's or client's own X-Request-Id was replaced by ours, so its logs and ours
    could not be matched; one that could forge a log line or flood it is still replaced."""
    own, unsafe = "lb-7f3a.2:9_X", ["a) failed: all is fine", "x" * 129, ""]
    with http_server(RateLimitedForAnHour) as url, chatbot_serve(
            write_bot_config(tmp_path, url), data_dir=tmp_path / "data",
            env={"TEST_REMOTE_KEY": "k"}) as (ours, server):
        client = openai.OpenAI(base_url=f"{ours}/v1", api_key="unused", max_retries=0)
        with pytest.raises(openai.InternalServerError) as refused:
            client.chat.completions.create(model="prompt", messages=ASK,
                                           extra_headers={"X-Request-Id": own})
        replaced = [httpx.get(f"{ours}/v1/models", headers={"X-Request-Id": bad})
                    .headers["x-request-id"] for bad in unsafe]
        server.terminate()
        log = server.communicate(timeout=30)[0]
    assert refused.value.request_id == own
    assert f"chat completion (request {own}) failed: backend 'remote'" in log
    assert all(re.fullmatch(r"req_[0-9a-f]{32}", i) for i in replaced)
    assert "all is fine" not in log


class AnswersHello(QuietHandler):
    def do_POST(self) -> None:
        if self.asked_to_chat():
            self.reply(200, events(("Hello", "stop")), "text/event-stream")


def engine_failing_before_the_answer(root: Path, url: str, what: str,
                                     monkeypatch: pytest.MonkeyPatch):
    """A bot whose remote variant fails before its answer starts: its tokenizer does not load,
    or its index is damaged (a file deleted after `chatbot index sync`)."""
    from click.testing import CliRunner

    from app.build import build_engine
    from app.cli import main
    from chatbot.config_file import load_config

    path = write_bot_config(root, url)
    config = yaml.safe_load(path.read_text())
    monkeypatch.setenv("TEST_REMOTE_KEY", "k")
    monkeypatch.setenv("CHATBOT_DATA_DIR", str(root / "data"))
    if what == "tokenizer":
        config["variants"]["prompt"]["tokenizer"] = str(root / "no-such-tokenizer")
        path.write_text(yaml.safe_dump(config))
        return build_engine(load_config(path), search=passages)
    (root / "docs").mkdir()
    (root / "docs" / "install.md").write_text("# Install\n\nRun the installer with sudo.\n")
    config |= {"models": {"embedder": "hash:64"}, "retrieval": {"min_score": None}}
    path.write_text(yaml.safe_dump(config))
    synced = CliRunner().invoke(main, ["index", "sync", "--config", str(path)])
    assert synced.exit_code == 0, synced.output
    (root / "data" / "index" / "faiss-000001.index").unlink()
    return build_engine(load_config(path))


@pytest.mark.parametrize("what, said", [("tokenizer", "no-such-tokenizer does not exist"),
                                        ("search", "faiss-000001.index is missing")])
def test_a_failure_before_the_answer_starts_is_logged_with_the_question(
        tmp_path, monkeypatch, what, said) -> None:
    """The caller got a 500 and the conversation log held nothing: the question and why it
    failed were lost to the Review tab and `chatbot logs`."""
    with http_server(AnswersHello) as url:
        engine = engine_failing_before_the_answer(tmp_path, url, what, monkeypatch)
        served = Served(engine)
        try:
            client = served.client(default_headers={"X-Session-Id": "s-before"})
            with pytest.raises(openai.InternalServerError) as failed:
                client.chat.completions.create(model="prompt", messages=ASK)
        finally:
            served.stop()
    question, answer = engine.log.conversation("s-before").turns
    assert (question.role, question.text) == ("user", "Hello")
    assert answer.status == "error" and said in answer.error
    assert said in failed.value.body["message"]  # what the caller was told


def test_a_request_waiting_for_a_busy_backends_slot_fails_once_its_wait_is_up(
        tmp_path, monkeypatch) -> None:
    """A request behind answers that held every max_concurrency slot waited without end (a
    backend that hangs held it for good), and its caller with it."""
    arrived, release = threading.Event(), threading.Event()

    class Hangs(QuietHandler):
        def do_POST(self) -> None:
            if self.asked_to_chat():
                arrived.set()
                release.wait(60)
                self.reply(200, events(("Late", "stop")), "text/event-stream")

    with http_server(Hangs) as url:
        path = write_bot_config(tmp_path, url)
        config = yaml.safe_load(path.read_text())
        config["backends"]["remote"] |= {"max_concurrency": 1, "queue_timeout_s": 0.01}
        path.write_text(yaml.safe_dump(config))
        engine = bot_engine(path, monkeypatch)
        served = Served(engine)
        try:
            holding = engine.answer("s-first", "Hello", "prompt")
            assert arrived.wait(30)  # the first answer holds the only slot
            with pytest.raises(openai.InternalServerError) as refused:
                served.client().chat.completions.create(model="prompt", messages=ASK)
            release.set()
            assert holding.result().text == "Late"
        finally:
            release.set()
            served.stop()
    error = refused.value
    assert error.status_code == 503 and error.body["code"] == "backend_busy"
    assert error.body["message"] == (
        "backend 'remote' had no free place for 0.01 s: all 1 of its places (backends.remote."
        "max_concurrency) were taken by answers under way; ask again later, or raise backends."
        "remote.max_concurrency if the server has room, or backends.remote.queue_timeout_s")


def test_an_unreachable_backend_is_a_503_that_names_it_and_what_to_check(tmp_path,
                                                                         monkeypatch) -> None:
    """A backend that was down (a closed port) gave our callers a 500 model_unavailable, as
    a bug of ours would, where a server down or starting behind a gateway gave a 503."""
    from tests.serving import free_port

    engine = bot_engine(write_bot_config(tmp_path, f"http://127.0.0.1:{free_port()}/v1"),
                        monkeypatch)
    served = Served(engine)
    try:
        with pytest.raises(openai.InternalServerError) as refused:
            served.client().chat.completions.create(model="prompt", messages=ASK)
    finally:
        served.stop()
    error = refused.value
    assert error.status_code == 503 and error.body["code"] == "backend_unreachable"
    assert re.fullmatch(r"backend 'remote' is unreachable after 3 retries \(.*\); check that "
                        r"the server is running and backends.remote.base_url",
                        error.body["message"])
    assert error.response.headers["retry-after"] == "1"


def test_a_stream_starts_at_once_and_keeps_alive_while_the_backend_holds_its_answer(
        tmp_path, monkeypatch) -> None:
    """A stream's headers waited for the first token: a client with a short read timeout, or
    a proxy with an idle limit (nginx's 60 s), gave up during a long prompt or a busy model."""
    released, replied = threading.Semaphore(0), []

    class Holds(QuietHandler):
        def do_POST(self) -> None:
            if self.asked_to_chat():
                released.acquire(timeout=10)
                self.reply(200, events(("Late", "stop")), "text/event-stream")
                replied.append(True)

    monkeypatch.setattr("app.api.KEEPALIVE_S", 0.05)
    with api_over(Holds, tmp_path, monkeypatch) as (served, _):
        stream = served.client().chat.completions.create(model="prompt", messages=ASK,
                                                         stream=True)
        started_before_the_answer = not replied
        released.release()
        text = "".join(chunk.choices[0].delta.content or "" for chunk in stream
                       if chunk.choices)
        body = {"model": "prompt", "messages": ASK, "stream": True}
        with httpx.stream("POST", f"{served.base_url}/chat/completions", json=body) as response:
            lines = response.iter_lines()
            waiting = [next(lines), next(lines), next(lines)]
            held = len(replied) == 1
            released.release()
            rest = list(lines)
    assert started_before_the_answer and text == "Late"
    assert held and waiting == [": keep-alive", "", ": keep-alive"]
    assert '"content": "Late"' in "".join(rest) and rest[-2:] == ["data: [DONE]", ""]


def test_a_stream_left_before_its_first_token_hangs_up_on_the_backend(tmp_path,
                                                                      monkeypatch) -> None:
    """A stream begins before the answer does: a client that leaves while it waits still
    stops the answer, so the backend is not kept working for nobody."""
    hung_up = threading.Event()

    class Holds(QuietHandler):
        def do_POST(self) -> None:
            if self.asked_to_chat():
                self.connection.settimeout(30)
                if self.connection.recv(1) == b"":  # the bot closed the connection
                    hung_up.set()

    with api_over(Holds, tmp_path, monkeypatch) as (served, engine):
        body = {"model": "prompt", "messages": ASK, "stream": True}
        with httpx.stream("POST", f"{served.base_url}/chat/completions", json=body,
                          headers={"X-Session-Id": "leaves"}) as response:
            assert next(response.iter_lines()) == ": keep-alive"
        assert hung_up.wait(30)
        deadline = time.monotonic() + 20
        while engine.log.conversation("leaves").turns[-1].status == "pending":
            assert time.monotonic() < deadline, "the interrupted turn was never closed"
            time.sleep(0.05)
    assert engine.log.conversation("leaves").turns[-1].status == "interrupted"
