"""The OpenAI-compatible API on a real uvicorn server, driven by the real ``openai`` client."""

from __future__ import annotations

import json
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from index.types import Chunk, Hit

PASSAGE = "Run `chatbot index sync docs/` to index your documents."
ASK = [{"role": "user", "content": "How do I index my documents?"}]
JSON = {"Content-Type": "application/json"}


def fixed_search(query: str, k: int) -> list[Hit]:
    chunk = Chunk("c1", "docs/indexing.md", PASSAGE, "Indexing > Sync", "hash")
    return [Hit(chunk, 0.87, 1)][:k]


class Served:
    """A FastAPI app with the API router, served by uvicorn on a free port in a thread (the
    credentials in front of it are tested with the whole server in test_server.py)."""

    def __init__(self, engine, assign_variant=None) -> None:
        import uvicorn
        from fastapi import FastAPI

        from app.api import create_api_router

        app = FastAPI()
        app.include_router(create_api_router(engine, assign_variant))
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port,
                                                    log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        self.base_url = f"http://127.0.0.1:{self.port}/v1"

    def client(self, api_key: str = "unused", **kwargs) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.base_url, api_key=api_key, max_retries=0,
                             timeout=30, **kwargs)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module")
def engine(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    from app.build import build_engine
    from chatbot.config_file import load_config

    root = tmp_path_factory.mktemp("api-bot")
    # one torch thread: on a busy 2-core machine two threads wait on each other (20x slower)
    # the hash embedder: attribution is lexical here (tests/test_attribution.py uses MiniLM)
    config = {"data_dir": str(root / "data"),
              "models": {"chat": str(tiny_model_dir), "threads": 1, "embedder": "hash:64"},
              "generation": {"max_new_tokens": 8, "max_message_chars": 2000,
                             "repetition_penalty": 2.0},  # words, not newlines, from noise
              "variants": {"prompt": {}, "plain": {"template": "plain", "retrieval": False},
                           "broken": {"adapter": "adapters/missing"}}}
    (root / "bot.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CHATBOT_DATA_DIR", str(root / "data"))
        return build_engine(load_config(root / "bot.yaml"), search=fixed_search)


@pytest.fixture(scope="module")
def served(engine) -> Iterator[Served]:
    server = Served(engine)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(served) -> openai.OpenAI:
    return served.client()


def logged_turn(engine, turn_id: int) -> sqlite3.Row:
    db = sqlite3.connect(engine.log.path)
    db.row_factory = sqlite3.Row
    row = db.execute("SELECT t.*, s.client FROM turns t JOIN sessions s "
                     "ON s.id = t.session_id WHERE t.id = ?", (turn_id,)).fetchone()
    db.close()
    return row


def test_a_completion_carries_the_logged_answer_its_sources_and_usage(client, engine) -> None:
    completion = client.chat.completions.create(model="prompt", messages=ASK)
    answer = completion.choices[0].message.content
    turn = logged_turn(engine, completion.turn_id)
    assert answer and answer == turn["text"] and turn["status"] == "complete"
    assert completion.model == "prompt" and completion.object == "chat.completion"
    assert completion.choices[0].finish_reason in ("stop", "length")
    assert completion.sources == [{"n": 1, "chunk_id": "c1", "source": "docs/indexing.md",
                                   "location": "Indexing > Sync", "score": 0.87,
                                   "text": PASSAGE}]
    sent = json.loads(turn["messages_json"])
    assert PASSAGE in sent[-1]["content"]
    assert 0 < completion.usage.completion_tokens <= 8
    assert completion.usage.prompt_tokens > 20
    assert completion.usage.total_tokens == (completion.usage.prompt_tokens
                                             + completion.usage.completion_tokens)
    assert turn["client"] == "api" and completion.session_id.startswith("api-")
    logged = json.loads(turn["attribution_json"])  # the log keeps what the client got
    assert logged["sentences"] == completion.attribution["sentences"]


def test_streamed_deltas_concatenate_to_the_logged_answer(client, engine) -> None:
    chunks = list(client.chat.completions.create(model="prompt", messages=ASK, stream=True))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks)
    last = chunks[-1]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert last.choices[0].finish_reason in ("stop", "length")
    assert [s["source"] for s in last.sources] == ["docs/indexing.md"]
    assert last.usage.completion_tokens > 0
    spans = [(s["start"], s["end"]) for s in last.attribution["sentences"]]
    assert spans and all(0 <= a < b <= len(streamed) for a, b in spans)  # spans of the content
    assert last.attribution["method"] == "lexical" and 0 <= last.attribution["score"] <= 1
    assert streamed and streamed == logged_turn(engine, last.turn_id)["text"]
    unstreamed = client.chat.completions.create(model="prompt", messages=ASK)
    assert streamed == unstreamed.choices[0].message.content  # greedy: the same answer


def test_earlier_messages_are_the_history_and_system_messages_are_left_out(client,
                                                                           engine) -> None:
    messages = [{"role": "system", "content": "Talk like a pirate."},
                {"role": "user", "content": "What is an index?"},
                {"role": "assistant", "content": "A searchable store of passages."},
                {"role": "user", "content": [{"type": "text", "text": "How is it built?"}]}]
    completion = client.chat.completions.create(model="plain", messages=messages,
                                                extra_headers={"X-Session-Id": "team-42"})
    sent = json.loads(logged_turn(engine, completion.turn_id)["messages_json"])
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
    assert "pirate" not in sent[0]["content"] and sent[0]["content"].startswith("You are")
    assert sent[1:] == [messages[1], messages[2], {"role": "user",
                                                   "content": "How is it built?"}]
    assert completion.system_messages_ignored == 1 and completion.sources == []
    assert completion.session_id == "team-42"


def test_sampling_settings_are_honoured_and_logged(client, engine) -> None:
    full = client.chat.completions.create(model="plain", messages=ASK, max_tokens=8)
    text = full.choices[0].message.content
    short = client.chat.completions.create(model="plain", messages=ASK, max_tokens=2)
    assert short.choices[0].finish_reason == "length"
    cut = short.choices[0].message.content
    assert text.startswith(cut) and len(cut) < len(text)
    stop = text.split()[len(text.split()) // 2]
    stopped = client.chat.completions.create(model="plain", messages=ASK, stop=[stop])
    assert stopped.choices[0].message.content == text[:text.find(stop)].strip()
    sampled = client.chat.completions.create(model="plain", messages=ASK, temperature=0.7,
                                             top_p=0.9, user="sampler")
    settings = json.loads(logged_turn(engine, sampled.turn_id)["settings_json"])
    assert settings["temperature"] == 0.7 and settings["top_p"] == 0.9
    assert sampled.session_id == "sampler"


def test_models_lists_the_variants(client) -> None:
    models = client.models.list()
    assert [m.id for m in models.data] == ["prompt", "plain", "broken"]
    assert models.data[0].default is True and models.data[1].retrieval is False
    assert client.models.retrieve("plain").template == "plain"
    with pytest.raises(openai.NotFoundError, match="'gpt-4' does not exist"):
        client.models.retrieve("gpt-4")


ERRORS = [
    ("unknown model", dict(model="gpt-4", messages=ASK), openai.NotFoundError,
     "model_not_found", "the model 'gpt-4' does not exist; this bot's models (variants) are: "
     "prompt, plain, broken"),
    ("empty messages", dict(model="prompt", messages=[]), openai.BadRequestError,
     "empty_messages", "messages is empty; send at least one user message"),
    ("bad role", dict(model="prompt", messages=[{"role": "tool", "content": "x",
                                                  "tool_call_id": "1"}]),
     openai.BadRequestError, "invalid_role",
     "messages[0].role is 'tool'; this server accepts system, developer, user, assistant"),
    ("last not user", dict(model="prompt", messages=[*ASK, {"role": "assistant",
                                                            "content": "Sure."}]),
     openai.BadRequestError, "last_message_not_user",
     "the last message is from 'assistant'; the last message must be the user's question"),
    ("blank question", dict(model="prompt", messages=[{"role": "user", "content": " \x00 "}]),
     openai.BadRequestError, "invalid_input", "the message is empty; type a question"),
    ("too long", dict(model="prompt", messages=[{"role": "user", "content": "a" * 5000}]),
     openai.BadRequestError, "invalid_input",
     "the message has 5,000 characters; the limit is 2,000 (generation.max_message_chars)"),
    ("too many tokens asked", dict(model="prompt", messages=ASK, max_tokens=5000),
     openai.BadRequestError, "invalid_value", "max_tokens is 5,000; the model reads 1,024"),
    ("bad temperature", dict(model="prompt", messages=ASK, temperature=3),
     openai.BadRequestError, "invalid_value", "temperature: Input should be less than or equal"),
    ("max_tokens as text", dict(model="prompt", messages=ASK, max_tokens="4"),
     openai.BadRequestError, "invalid_value", "max_tokens: Input should be a valid integer"),
    ("temperature as text", dict(model="prompt", messages=ASK, temperature="0.7"),
     openai.BadRequestError, "invalid_value", "temperature: Input should be a valid number"),
    ("missing adapter", dict(model="broken", messages=ASK), openai.InternalServerError,
     "model_unavailable", "adapters/missing does not exist; train one with"),
]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("case", ERRORS, ids=[e[0] for e in ERRORS])
def test_errors_have_openais_shape_and_the_server_keeps_serving(client, case, stream) -> None:
    _, request, error, code, message = case
    with pytest.raises(error) as caught:
        client.chat.completions.create(**request, stream=stream)
    assert caught.value.code == code
    assert message in caught.value.body["message"]
    assert set(caught.value.body) == {"message", "type", "param", "code"}
    if not stream:  # once per case is enough to show the server keeps serving
        assert client.chat.completions.create(model="plain", messages=ASK).choices[0].message


def test_a_model_failure_asks_openai_clients_not_to_retry_it(served, engine) -> None:
    """The openai client retries a 500 twice unless told not to: three failed turns a call."""
    response = httpx.post(f"{served.base_url}/chat/completions", headers=JSON,
                          json={"model": "broken", "messages": ASK})
    assert response.status_code == 500 and response.headers["x-should-retry"] == "false"
    sent = []
    counting = httpx.Client(event_hooks={"request": [sent.append]})
    retrying = openai.OpenAI(base_url=served.base_url, api_key="unused", max_retries=2,
                             http_client=counting)
    with pytest.raises(openai.InternalServerError):
        retrying.chat.completions.create(model="broken", messages=ASK)
    assert len(sent) == 1


def test_bad_json_and_a_closed_stream(served, engine) -> None:
    response = httpx.post(f"{served.base_url}/chat/completions", content=b"{not json", headers=JSON)
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_json"
    latin1 = '{"model": "plain", "messages": [{"role": "user", "content": "caf\xe9"}]}'
    response = httpx.post(f"{served.base_url}/chat/completions", content=latin1.encode("latin-1"),
                          headers=JSON)
    assert response.status_code == 400 and "utf-8" in response.json()["error"]["message"]
    body = {"model": "plain", "messages": ASK, "stream": True, "max_tokens": 900}
    with httpx.stream("POST", f"{served.base_url}/chat/completions", json=body,
                      headers={"X-Session-Id": "walks-away"}) as response:
        next(line for line in response.iter_lines() if '"content": "' in line)
    deadline = time.monotonic() + 20
    while (turns := engine.log.conversation("walks-away").turns)[-1].status == "pending":
        assert time.monotonic() < deadline, "the interrupted turn was never closed"
        time.sleep(0.05)
    assert turns[-1].status == "interrupted"


def test_concurrent_requests_are_all_answered(served, engine) -> None:
    expected = served.client().chat.completions.create(model="prompt", messages=ASK)
    results: list = []

    def ask(i: int) -> None:
        client = served.client()
        if i % 2:
            chunks = client.chat.completions.create(model="prompt", messages=ASK, stream=True)
            results.append("".join(c.choices[0].delta.content or "" for c in chunks))
        else:
            reply = client.chat.completions.create(model="prompt", messages=ASK)
            results.append(reply.choices[0].message.content)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert results == [expected.choices[0].message.content] * 6


def test_the_ab_model_answers_with_the_sessions_sticky_variant(engine) -> None:
    assigned = {}
    server = Served(engine, assign_variant=lambda session: assigned.setdefault(session, "plain"))
    try:
        client = server.client()
        assert "ab" in [m.id for m in client.models.list()]
        completion = client.chat.completions.create(
            model="ab", messages=ASK, extra_headers={"X-Session-Id": "ab-user-1"})
        assert completion.model == "ab"  # the variant's name is not shown
        turn = logged_turn(engine, completion.turn_id)
        assert turn["variant"] == "plain" and assigned == {"ab-user-1": "plain"}
    finally:
        server.stop()


def test_without_ab_the_ab_model_is_unknown(client) -> None:
    with pytest.raises(openai.NotFoundError, match="the model 'ab' does not exist"):
        client.chat.completions.create(model="ab", messages=ASK)


TOOL = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}


@pytest.mark.parametrize("asked, field, expected", [
    ({"tools": [TOOL], "tool_choice": "required"}, "tools",
     "this server answers in text and makes no tool calls; leave tools out"),
    ({"tool_choice": "required"}, "tool_choice", "this server makes no tool calls"),
    ({"response_format": {"type": "json_object"}}, "response_format",
     'this server answers in plain text; only {"type": "text"} is served'),
    ({"logprobs": True}, "logprobs", "this server does not return log probabilities"),
])
def test_what_the_server_cannot_do_is_refused_not_ignored(client, asked, field,
                                                         expected) -> None:
    """A client that asks for a tool call or JSON and gets plain text fails further on."""
    with pytest.raises(openai.BadRequestError, match=expected) as refused:
        client.chat.completions.create(model="plain", messages=ASK, **asked)
    assert refused.value.body["param"] == field
    plain = client.chat.completions.create(model="plain", messages=ASK, tools=[],
                                           response_format={"type": "text"}, logprobs=False)
    assert plain.choices[0].message.content is not None


@pytest.mark.parametrize("field, value, expected", [
    ("stream", "yes", "stream: Input should be a valid boolean"),
    ("n", True, "n: Input should be a valid integer"),
    ("top_p", "0.9", "top_p: Input should be a valid number"),
])
def test_request_fields_have_strict_types(served, client, field, value, expected) -> None:
    body = {"model": "plain", "messages": ASK, field: value}
    response = httpx.post(f"{served.base_url}/chat/completions", json=body)
    assert response.status_code == 400
    assert response.json()["error"] == {"message": expected, "type": "invalid_request_error",
                                        "param": field, "code": "invalid_value"}
    whole = client.chat.completions.create(model="plain", messages=ASK, temperature=0, top_p=1)
    assert whole.choices[0].message.content  # a whole number is still a number


def test_a_body_nested_too_deeply_is_a_400(served, client) -> None:
    depth = 100_000
    body = b'{"model": "plain", "messages": ' + b"[" * depth + b"]" * depth + b"}"
    response = httpx.post(f"{served.base_url}/chat/completions", content=body, headers=JSON)
    assert response.status_code == 400
    assert response.json()["error"] == {
        "message": "the request body nests JSON arrays or objects too deeply to read; send an "
                   'object such as {"model": "prompt", "messages": [{"role": "user", '
                   '"content": "Hi"}]}',
        "type": "invalid_request_error", "param": None, "code": "invalid_json"}
    assert client.chat.completions.create(model="plain", messages=ASK).choices[0].message


def test_a_client_cannot_add_turns_to_a_session_it_did_not_begin(served, client, engine) -> None:
    """A web visitor's session id shows in the Review tab; naming it adds nothing to it."""
    engine.log.ensure_session("web-visitor", "prompt")  # as the web UI begins one
    before = len(engine.log.conversation("web-visitor").turns)
    with pytest.raises(openai.ConflictError, match="begun by another client") as refused:
        client.chat.completions.create(model="plain", messages=ASK,
                                       extra_headers={"X-Session-Id": "web-visitor"})
    assert refused.value.body["code"] == "session_not_yours"
    assert len(engine.log.conversation("web-visitor").turns) == before
    for _ in range(2):  # its own session, as often as it likes
        client.chat.completions.create(model="plain", messages=ASK, user="my-own-session")
    assert len(engine.log.conversation("my-own-session").turns) == 4


@pytest.mark.parametrize("kind", ["text/plain", "application/x-www-form-urlencoded", None])
def test_a_body_not_sent_as_json_is_refused_and_nothing_is_logged(served, engine, kind) -> None:
    """Another site's page can make a browser post a form or text to a server on the
    visitor's machine, but not JSON."""
    before = len(engine.log.sessions(limit=10_000))
    body = json.dumps({"model": "plain", "messages": ASK}).encode()
    response = httpx.post(f"{served.base_url}/chat/completions", content=body,
                          headers={"Content-Type": kind} if kind else {})
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"
    assert len(engine.log.sessions(limit=10_000)) == before


def test_a_lone_surrogate_in_a_stop_string_is_dropped_too(served) -> None:
    body = json.dumps({"model": "plain", "messages": ASK, "stop": "\ud800"})
    response = httpx.post(f"{served.base_url}/chat/completions", content=body, headers=JSON)
    assert response.status_code == 200, response.text


def test_a_lone_surrogate_in_an_earlier_message_is_dropped_like_in_the_question(
        served, engine) -> None:
    messages = [{"role": "user", "content": "hi \ud800there"},
                {"role": "assistant", "content": "Hello \udfff!"},
                {"role": "user", "content": "How do I index? \ud800"}]
    body = json.dumps({"model": "plain", "messages": messages})  # \ud800 escapes, as JSON allows
    response = httpx.post(f"{served.base_url}/chat/completions", content=body.encode(),
                          headers=JSON)
    assert response.status_code == 200, response.text
    sent = json.loads(logged_turn(engine, response.json()["turn_id"])["messages_json"])
    assert [m["content"] for m in sent[1:]] == ["hi there", "Hello !", "How do I index?"]


def test_a_request_over_the_configured_limits_is_refused_naming_the_key(engine,
                                                                        tmp_path) -> None:
    from fastapi.testclient import TestClient

    from chatbot.config import BotConfig
    from app.server import create_server_app

    config = BotConfig.model_validate({
        "data_dir": str(tmp_path), "logging": {"enabled": False},
        "server": {"max_request_messages": 3, "max_request_chars": 100}})
    history = [{"role": "user", "content": "What is an index?"},
               {"role": "assistant", "content": "A store of passages."}]
    long_question = {"role": "user", "content": [{"type": "text", "text": "why " * 20}]}
    with TestClient(create_server_app(engine, config)) as http:
        def ask(messages: list[dict]) -> httpx.Response:
            return http.post("/v1/chat/completions", json={"model": "plain",
                                                            "messages": messages})

        assert ask([*history, *ASK]).status_code == 200
        too_many = ask([*history, *history, *ASK])
        assert too_many.status_code == 400 and too_many.json()["error"] == {
            "message": "the request has 5 messages; this server takes at most 3 "
                       "(server.max_request_messages); send fewer earlier messages",
            "type": "invalid_request_error", "param": "messages", "code": "too_many_messages"}
        too_long = ask([*history, long_question])
        assert too_long.status_code == 400 and too_long.json()["error"] == {
            "message": "the request's messages have 117 characters; this server takes at most "
                       "100 (server.max_request_chars); send less history",
            "type": "invalid_request_error", "param": "messages", "code": "request_too_long"}
