"""What the API reads from a request: strict fields, refused features and body types, size
limits, lone surrogates, and whose session a request may continue."""

from __future__ import annotations

import json
import logging
import socket
import time

import httpx
import openai
import pytest

from api_serving import (ASK, JSON, client, engine, logged_turn,  # noqa: F401 (fixtures)
                         served)


TOOL = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}


@pytest.mark.parametrize("asked, field, expected", [
    ({"tools": [TOOL]}, "tools",
     "this server answers in text and makes no tool calls; leave tools out"),
    ({"tools": [TOOL], "tool_choice": "required"}, "tool_choice",
     'this server makes no tool calls; set tool_choice to "none"'),
    ({"tool_choice": "required"}, "tool_choice", "this server makes no tool calls"),
    ({"response_format": {"type": "json_object"}}, "response_format",
     'this server answers in plain text; only {"type": "text"} is served'),
    ({"logprobs": True}, "logprobs", "this server does not return log probabilities"),
    ({"top_logprobs": 3}, "top_logprobs", "does not return log probabilities; leave top_logprobs"),
    ({"functions": [TOOL["function"]]}, "functions",
     "makes no tool calls; leave functions out"),  # the older names of tools, tool_choice
    ({"functions": [TOOL["function"]], "function_call": {"name": "lookup"}}, "function_call",
     'makes no tool calls; set function_call to "none" or leave it out'),
    ({"modalities": ["text", "audio"], "audio": {"voice": "alloy", "format": "wav"}},
     "modalities", "this server answers in text only; send"),
    ({"audio": {"voice": "alloy", "format": "wav"}}, "audio",
     "this server answers in text only; leave audio out"),
    ({"logit_bias": {"50256": -100}}, "logit_bias",
     r"this server does not bias tokens \(each variant's model numbers them its own way\); "
     r"leave logit_bias out or send \{\}"),
])
def test_what_the_server_cannot_do_is_refused_not_ignored(client, asked, field,
                                                         expected) -> None:
    """A client that asks for a tool call or JSON and gets plain text fails further on."""
    with pytest.raises(openai.BadRequestError, match=expected) as refused:
        client.chat.completions.create(model="plain", messages=ASK, **asked)
    assert refused.value.body["param"] == field
    assert refused.value.body["message"].startswith(f"{field}: this server")  # no "Value error"
    plain = client.chat.completions.create(model="plain", messages=ASK, tools=[],
                                           response_format={"type": "text"}, logprobs=False,
                                           modalities=["text"], logit_bias={})
    assert plain.choices[0].message.content is not None


@pytest.mark.parametrize("field, value, expected", [
    ("stream", "yes", "stream: Input should be a valid boolean"),
    ("n", True, "n: Input should be a valid integer"),
    ("top_p", "0.9", "top_p: Input should be a valid number"),
    ("temperature", float("nan"), "temperature: Input should be a finite number"),
])
def test_request_fields_have_strict_types(served, client, field, value, expected) -> None:
    body = {"model": "plain", "messages": ASK, field: value}
    response = httpx.post(f"{served.base_url}/chat/completions", content=json.dumps(body),
                          headers={"content-type": "application/json"})  # NaN as Python writes it
    assert response.status_code == 400
    assert response.json()["error"] == {"message": expected, "type": "invalid_request_error",
                                        "param": field, "code": "invalid_value"}
    whole = client.chat.completions.create(model="plain", messages=ASK, temperature=0, top_p=1)
    assert whole.choices[0].message.content  # a whole number is still a number


@pytest.mark.parametrize("field, value, param, expected", [
    ("stop", 5, "stop",
     "stop: Input should be a valid string, or stop: Input should be a valid list"),
    ("messages", [{"role": "user", "content": ["Hi"]}], "messages.0.content",
     "messages.0.content: Input should be a valid string, or messages.0.content.0: Input "
     "should be a valid dictionary"),
])
def test_a_field_that_takes_two_shapes_says_what_is_wrong_with_each(served, field, value, param,
                                                                   expected) -> None:
    """Not pydantic's name for the first shape it tried (``stop.str``) as if it were a field,
    nor only that shape's complaint: content may be a list, of parts."""
    body = {"model": "plain", "messages": ASK, field: value}
    response = httpx.post(f"{served.base_url}/chat/completions", json=body)
    assert response.status_code == 400
    assert response.json()["error"] == {"message": expected, "type": "invalid_request_error",
                                        "param": param, "code": "invalid_value"}


def test_a_message_that_is_not_an_object_is_refused_without_the_servers_class_names(
        served) -> None:
    body = {"model": "plain", "messages": ["How do I index?"]}
    response = httpx.post(f"{served.base_url}/chat/completions", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["message"] == (
        'messages.0: Input should be an object such as {"role": "user", "content": "Hi"}')


def test_null_is_the_default_for_the_fields_openai_makes_nullable(served) -> None:
    """Clients that send every field, null when unset, as OpenAI's API allows."""
    body = {"model": "plain", "messages": ASK, "stream": None, "n": None, "max_tokens": None}
    response = httpx.post(f"{served.base_url}/chat/completions", json=body)
    assert response.status_code == 200 and response.json()["choices"][0]["message"]["content"]


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


def test_a_number_of_thousands_of_digits_is_refused_in_the_clients_terms(served) -> None:
    """Python's error for it tells the reader to call sys.set_int_max_str_digits(): advice
    for the server's programmers, which a client can't follow."""
    body = b'{"model": "plain", "messages": [], "max_tokens": ' + b"9" * 5000 + b"}"
    response = httpx.post(f"{served.base_url}/chat/completions", content=body, headers=JSON)
    assert response.status_code == 400
    assert response.json()["error"] == {
        "message": "the request body has a number of 5,000 digits; no field takes one that long",
        "type": "invalid_request_error", "param": None, "code": "invalid_json"}


def test_a_client_that_hangs_up_while_sending_its_body_is_no_server_error(served,
                                                                         client) -> None:
    """A client that times out mid-upload is not the server failing: no traceback in the
    server log for each one, which a stranger could send by the thousand."""
    failures: list[logging.LogRecord] = []
    handler = logging.Handler(logging.ERROR)
    handler.emit = failures.append
    server_log = logging.getLogger("uvicorn.error")
    server_log.addHandler(handler)
    try:
        with socket.create_connection(("127.0.0.1", served.port)) as sock:
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: bot\r\n"
                         b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
                         b'{"model": "plain", "messages": [')
            time.sleep(0.2)
        time.sleep(0.5)  # the server sees the hang-up at once
        assert client.chat.completions.create(model="plain", messages=ASK).choices[0].message
    finally:
        server_log.removeHandler(handler)
    assert [record.getMessage() for record in failures] == []


@pytest.mark.parametrize("body, kind", [('[{"model": "plain"}]', "array"), ('"hi"', "string"),
                                        ("null", "null")])
def test_a_body_that_is_not_a_json_object_says_what_is_expected(served, body, kind) -> None:
    response = httpx.post(f"{served.base_url}/chat/completions", content=body, headers=JSON)
    assert response.status_code == 400
    assert response.json()["error"]["message"] == (
        'the request body must be a JSON object such as {"model": ..., "messages": [...]}, '
        f"not a JSON {kind}")


def test_a_client_cannot_add_turns_to_a_session_it_did_not_begin(served, client, engine) -> None:
    """A web visitor's session id shows in the Review tab; naming it adds nothing to it."""
    engine.log.ensure_session("web-visitor", "prompt")  # as the web UI begins one
    before = len(engine.log.conversation("web-visitor").turns)
    with pytest.raises(openai.ConflictError, match="begun by another client") as refused:
        client.chat.completions.create(model="plain", messages=ASK,
                                       extra_headers={"X-Session-Id": "web-visitor"})
    assert refused.value.body["code"] == "session_not_yours"
    assert refused.value.response.headers["x-should-retry"] == "false"  # openai retries a 409
    assert len(engine.log.conversation("web-visitor").turns) == before
    for _ in range(2):  # its own session, as often as it likes
        client.chat.completions.create(model="plain", messages=ASK,
                                       extra_headers={"X-Session-Id": "my-own-session"})
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
        long_stop = http.post("/v1/chat/completions", json={"model": "plain", "messages": ASK,
                                                             "stop": ["x" * 60, "y" * 41]})
        assert long_stop.status_code == 400 and long_stop.json()["error"] == {
            "message": "the stop sequences have 101 characters; this server takes at most 100 "
                       "(server.max_request_chars)",
            "type": "invalid_request_error", "param": "stop", "code": "request_too_long"}


def test_a_body_over_what_the_limits_allow_is_refused_as_it_arrives(engine, tmp_path) -> None:
    """Declared or not (chunked), a body larger than ``server.max_request_chars`` can need is
    refused before it is read whole, so a stranger's gigabyte is never held in memory."""
    from fastapi.testclient import TestClient

    from app.api_body import RequestLimits
    from app.server import create_server_app
    from chatbot.config import BotConfig

    config = BotConfig.model_validate({"data_dir": str(tmp_path), "logging": {"enabled": False},
                                       "server": {"max_request_chars": 100}})
    allowed = RequestLimits(500, 100).body_bytes
    body = b'{"model": "plain", "messages": [], "pad": "' + b"x" * allowed + b'"}'
    with TestClient(create_server_app(engine, config)) as http:
        for content in (body, iter([body[:1000], body[1000:]])):  # with and without a length
            refused = http.post("/v1/chat/completions", content=content, headers=JSON)
            assert refused.status_code == 413 and refused.json()["error"] == {
                "message": f"the request body is over {allowed:,} bytes, more than this server "
                           "reads; send less", "type": "invalid_request_error", "param": None,
                "code": "request_too_large"}
        assert http.post("/v1/chat/completions", json={"model": "plain",
                                                       "messages": ASK}).status_code == 200


def test_v1_paths_no_route_serves_get_openais_404_and_a_wrong_method_a_405(engine,
                                                                           tmp_path) -> None:
    """The web UI at "/" would answer both with its own {"detail": "Not Found"}."""
    from fastapi.testclient import TestClient

    from app.server import create_server_app
    from chatbot.config import BotConfig

    config = BotConfig.model_validate({"data_dir": str(tmp_path), "logging": {"enabled": False}})
    with TestClient(create_server_app(engine, config)) as http:
        wrong_method = http.get("/v1/chat/completions")
        assert wrong_method.status_code == 405 and wrong_method.headers["allow"] == "POST"
        assert wrong_method.json()["error"]["code"] == "method_not_allowed"
        missing = http.post("/v1/embeddings", json={"input": "hi"})
        assert missing.status_code == 404 and missing.json()["error"] == {
            "message": "this server has no /v1/embeddings; it serves /v1/chat/completions, "
                       "/v1/models and /v1/corrections", "type": "invalid_request_error",
            "param": None,
            "code": "not_found"}
        unknown = http.post("/v1/corrections", json={"turn_id": 10**9, "text": "x"})
        assert unknown.json()["error"]["message"].startswith("no turn 1000000000 in the ")
        assert http.get("/v1/models").status_code == 200  # the routes themselves still answer


def test_a_model_named_with_a_slash_can_be_retrieved(echo, tmp_path) -> None:
    from fastapi.testclient import TestClient

    from app.server import create_server_app
    from chatbot.config import BotConfig
    from chatbot.engine import Engine
    from chatbot.variants import Variant

    engine = Engine({"team/v2": Variant("team/v2", "base", "plain", False)}, lambda m: echo)
    config = BotConfig.model_validate({"data_dir": str(tmp_path), "logging": {"enabled": False}})
    with TestClient(create_server_app(engine, config)) as http:
        assert [m["id"] for m in http.get("/v1/models").json()["data"]] == ["team/v2"]
        assert http.get("/v1/models/team/v2").json()["id"] == "team/v2"


@pytest.mark.parametrize("part, expected", [
    ({"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}},
     "messages[0].content has a 'image_url' part; only text parts are accepted"),
    ({"type": "text", "txt": "typo"}, 'messages[0].content has a text part without its "text" '
                                      "string"),
])
def test_a_content_part_that_is_not_text_is_refused_naming_what_is_wrong(client, part,
                                                                         expected) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="plain", messages=[
            {"role": "user", "content": [{"type": "text", "text": "Look:"}, part]}])
    assert refused.value.body == {"message": expected, "type": "invalid_request_error",
                                  "param": "messages[0].content", "code": "invalid_content"}


ALTERNATING_ONLY = (
    "{%- for message in messages %}{%- if loop.index0 > 0 and message['role'] == "
    "messages[loop.index0 - 1]['role'] %}{{ raise_exception('Conversation roles must alternate "
    "user/assistant/user/assistant/...') }}{%- endif %}{{ '<|im_start|>' + message['role'] + "
    "'\\n' + message['content'] + '<|im_end|>\\n' }}{%- endfor %}{%- if add_generation_prompt "
    "%}{{ '<|im_start|>assistant\\n' }}{%- endif %}")
"""A chat template that refuses two messages of one role in a row, as Mistral's and Llama 2's do."""


def test_a_conversation_the_models_chat_template_refuses_is_the_clients_to_fix(
        tiny_model_dir, tmp_path, monkeypatch) -> None:
    """Two user messages in a row are fine for OpenAI; such a model's template refuses them:
    a 400 that says what the template said, not a server error the client can't act on."""
    import shutil

    import yaml

    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from api_serving import Served, fixed_search
    from app.api_tokenize import create_tokenize_router
    from app.build import build_engine
    from chatbot.config_file import load_config

    model = tmp_path / "alternating-model"
    shutil.copytree(tiny_model_dir, model)
    for saved_template in model.glob("chat_template.j*"):
        saved_template.unlink()
    settings = json.loads((model / "tokenizer_config.json").read_text())
    (model / "tokenizer_config.json").write_text(
        json.dumps(settings | {"chat_template": ALTERNATING_ONLY}))
    monkeypatch.setenv("CHATBOT_DATA_DIR", str(tmp_path / "data"))
    (tmp_path / "bot.yaml").write_text(yaml.safe_dump({
        "models": {"chat": str(model), "threads": 1, "embedder": "hash:64"},
        "generation": {"max_new_tokens": 4}, "default_variant": "plain",
        "variants": {"plain": {"template": "plain", "retrieval": False}}}))
    engine = build_engine(load_config(tmp_path / "bot.yaml"), search=fixed_search)
    server = Served(engine)
    twice = [{"role": "user", "content": "Hello"}, *ASK]
    try:
        client = server.client()
        with pytest.raises(openai.BadRequestError) as refused:
            client.chat.completions.create(model="plain", messages=twice)
        assert client.chat.completions.create(model="plain", messages=ASK).choices[0].message
    finally:
        server.stop()
    tokenizing = FastAPI()
    tokenizing.include_router(create_tokenize_router(engine))
    with TestClient(tokenizing) as http:
        counted = http.post("/tokenize", json={"model": "plain", "messages": twice})
    assert refused.value.body["message"] == (
        "the model's chat template refuses this conversation: Conversation roles must "
        "alternate user/assistant/user/assistant/...")
    assert counted.status_code == 400 and counted.json()["error"]["message"] == (
        refused.value.body["message"])
