"""Token counts and context windows from the server: our vLLM-style ``POST /tokenize`` and the
``max_model_len`` of our model cards, and a remote variant with no tokenizer here that counts
through them. A second `chatbot serve` on the tiny model plays the remote, as in test_remote.py."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from chatbot.types import Message
from tests.serving import chatbot_serve
from tests.test_remote import REMOTE_KEY, bot_engine, write_bot_config, write_remote_config

TINY_WINDOW = 1024
"""The tiny model's max_position_embeddings (tests/conftest.py)."""
BUDGET = TINY_WINDOW - 8  # the bot config's generation.max_new_tokens
CHAT = [{"role": "system", "content": "You answer from the team's documents."},
        {"role": "user", "content": "How do I index my documents?"},
        {"role": "assistant", "content": "Run `chatbot index sync docs/`."},
        {"role": "user", "content": "And how do I search them?"}]


@pytest.fixture(scope="module")
def remote_url(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The remote's root URL (``/tokenize`` is there, the API under ``/v1``)."""
    root = tmp_path_factory.mktemp("remote-tokens")
    with chatbot_serve(write_remote_config(root, tiny_model_dir), data_dir=root / "data",
                       env={"CHATBOT_API_KEY": REMOTE_KEY}) as (url, _):
        yield url


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def tokenize(url: str, body: object, key: str | None = REMOTE_KEY) -> httpx.Response:
    headers = {"Content-Type": "application/json"} | (
        {"Authorization": f"Bearer {key}"} if key else {})
    content = body if isinstance(body, bytes) else None
    return httpx.post(f"{url}/tokenize", json=None if content else body, content=content,
                      headers=headers, timeout=60)


def chat_ids(tokenizer, messages: list[dict], add_generation_prompt: bool = True) -> list[int]:
    return tokenizer.apply_chat_template(messages, add_generation_prompt=add_generation_prompt,
                                         tokenize=True, return_dict=False)


def long_history(pairs: int = 40) -> list[Message]:
    history = []
    for i in range(pairs):
        history += [Message("user", f"Question {i}: how do I index my documents again? " * 3),
                    Message("assistant", f"Answer {i}: run chatbot index sync on the docs. " * 3)]
    return history


def test_tokenize_counts_chat_messages_as_the_models_tokenizer_does(remote_url,
                                                                   tokenizer) -> None:
    counts = []
    for add in (True, False):
        response = tokenize(remote_url, {"model": "echo", "messages": CHAT,
                                         "add_generation_prompt": add})
        ids = chat_ids(tokenizer, CHAT, add)
        assert response.status_code == 200, response.text
        assert response.json() == {"count": len(ids), "max_model_len": TINY_WINDOW,
                                   "tokens": ids}
        counts.append(len(ids))
    assert counts[0] > counts[1]  # the generation prompt is counted only when asked for


def test_tokenize_counts_a_prompt_with_or_without_special_tokens(remote_url, tokenizer) -> None:
    text = "Run `chatbot index sync docs/` to index your documents."
    for special in (True, False):
        response = tokenize(remote_url, {"prompt": text, "add_special_tokens": special})
        ids = tokenizer.encode(text, add_special_tokens=special)
        assert response.json() == {"count": len(ids), "max_model_len": TINY_WINDOW,
                                   "tokens": ids}  # no model: the default variant's


def test_model_cards_carry_max_model_len(remote_url) -> None:
    response = httpx.get(f"{remote_url}/v1/models", timeout=60,
                         headers={"Authorization": f"Bearer {REMOTE_KEY}"})
    assert [(c["id"], c["max_model_len"]) for c in response.json()["data"]] == [
        ("echo", TINY_WINDOW)]


def test_tokenize_requires_the_key_when_one_is_set(remote_url) -> None:
    for key in (None, "wrong"):
        assert tokenize(remote_url, {"prompt": "hi"}, key=key).status_code == 401
    assert tokenize(remote_url, {"prompt": "hi"}).status_code == 200


NOT_BOTH = "send a JSON object with either messages (a chat) or prompt (text), not both"
WHAT_TO_SEND = ('send messages (a chat, such as [{"role": "user", "content": "Hi"}]) or prompt '
                '(text)')


@pytest.mark.parametrize("body, status, message", [
    ({"model": "nope", "prompt": "hi"}, 404,
     "the model 'nope' does not exist; this bot's models (variants) are: echo"),
    ({"model": "echo"}, 400, f"the request has neither messages nor prompt; {WHAT_TO_SEND}"),
    ({"prompt": "hi", "messages": CHAT}, 400, NOT_BOTH),
    (b"[1, 2]", 400, f"the request body is not a JSON object; {WHAT_TO_SEND}"),
    (b"{", 400, "the request body is not valid JSON (Expecting property name enclosed in double "
               "quotes: line 1 column 2 (char 1)); send an object with model and messages or "
               "prompt"),
    ({"messages": []}, 400, "messages: List should have at least 1 item after validation, "
                            "not 0"),
    ({"messages": [{"role": "tool", "content": "x"}]}, 400,
     "messages.0.role: Input should be 'system', 'user' or 'assistant'"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}]}, 400,
     "messages.0.content: Input should be a valid string"),
    ({"prompt": 5}, 400, "prompt: Input should be a valid string"),
    ({"prompt": "x", "add_special_tokens": "yes"}, 400,
     "add_special_tokens: Input should be a valid boolean"),
    ({"prompt": "x", "return_token_strs": True}, 400,
     "return_token_strs: Extra inputs are not permitted"),
    ({"model": "m" * 201, "prompt": "x"}, 400,
     "model: String should have at most 200 characters"),
    ({"prompt": "x" * 200_001}, 400, "the request has 200,001 characters; this server takes at "
                                     "most 200,000 (server.max_request_chars)"),
])
def test_a_bad_tokenize_request_is_an_openai_error_naming_the_field(remote_url, body, status,
                                                                     message) -> None:
    response = tokenize(remote_url, body)
    assert response.status_code == status
    assert response.json()["error"]["message"] == message


def test_a_remote_variant_without_a_tokenizer_counts_through_the_server(
        remote_url, tokenizer, tmp_path, monkeypatch) -> None:
    engine = bot_engine(write_bot_config(tmp_path, f"{remote_url}/v1"), monkeypatch)
    generator = engine.generator_for(engine.variants["prompt"])
    assert generator.tokenizer is None  # "echo" is no model this machine can load
    assert generator.context_window == TINY_WINDOW
    assert generator.counting == f"server {remote_url}/tokenize"
    messages = [Message(m["role"], m["content"]) for m in CHAT]
    for _ in range(2):  # the second count is the kept one
        assert generator.count_tokens(messages) == len(chat_ids(tokenizer, CHAT))
    assert generator.count_text("index sync") == len(
        tokenizer.encode("index sync", add_special_tokens=False))


def test_a_configured_context_window_wins_over_the_server(remote_url, tmp_path,
                                                          monkeypatch) -> None:
    path = write_bot_config(tmp_path, f"{remote_url}/v1")
    config = yaml.safe_load(path.read_text())
    config["variants"]["prompt"]["context_window"] = 512
    path.write_text(yaml.safe_dump(config))
    engine = bot_engine(path, monkeypatch)
    assert engine.generator_for(engine.variants["prompt"]).context_window == 512


def test_a_history_too_long_for_the_window_is_trimmed_to_fit_the_servers_count(
        remote_url, tmp_path, monkeypatch) -> None:
    engine = bot_engine(write_bot_config(tmp_path, f"{remote_url}/v1"), monkeypatch)
    history = long_history()
    reply = engine.answer("s1", "How do I index my documents?", "prompt",
                          history=history).result()
    sent = [m.as_dict() for m in reply.messages]
    counted = tokenize(remote_url, {"model": "echo", "messages": sent}).json()["count"]
    everything = [sent[0], *(m.as_dict() for m in history), sent[-1]]
    assert tokenize(remote_url, {"messages": everything}).json()["count"] > BUDGET
    assert reply.prompt_tokens == counted <= BUDGET
    kept = reply.messages[1:-1]
    assert 0 < len(kept) < len(history) and kept == history[-len(kept):]  # the newest turns
    assert reply.text != ""


def test_a_server_without_tokenize_is_counted_by_the_stated_estimate(
        tiny_model_dir, tmp_path, monkeypatch, caplog) -> None:
    from tests.test_api import Served  # a real server with the /v1 API only, like Ollama's

    (tmp_path / "plain").mkdir()
    served = Served(bot_engine(write_remote_config(tmp_path / "plain", tiny_model_dir),
                               monkeypatch))
    try:
        engine = bot_engine(write_bot_config(tmp_path, served.base_url), monkeypatch)
        generator = engine.generator_for(engine.variants["prompt"])
        with caplog.at_level(logging.INFO, logger="chatbot.remote_model"):
            reply = engine.answer("s1", "How do I index my documents?", "prompt",
                                  history=long_history()).result()
            assert generator.counting == "estimate: 3 characters per token"
    finally:
        served.stop()
    estimate = sum(math.ceil(len(m.content) / 3) + 4 for m in reply.messages)
    pair = sum(math.ceil(len(m.content) / 3) + 4 for m in reply.messages[1:3])
    assert reply.prompt_tokens == estimate <= BUDGET < estimate + pair  # as much as fits
    assert reply.text != "" and generator.context_window == TINY_WINDOW
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert said == [f"model 'echo' of backend 'remote': {served.base_url[:-3]}/tokenize gave no "
                    "token count (HTTP 404), so tokens are estimated at 3 characters per token,"
                    " which overcounts; set the variant's tokenizer to count them exactly"]


def test_an_unreachable_server_means_the_defaults_said_once_until_asked_again(
        tmp_path, monkeypatch, caplog) -> None:
    from tests.serving import free_port

    url = f"http://127.0.0.1:{free_port()}/v1"
    engine = bot_engine(write_bot_config(tmp_path, url), monkeypatch)
    generator = engine.generator_for(engine.variants["prompt"])
    with caplog.at_level(logging.WARNING, logger="chatbot.remote_model"):
        for _ in range(2):  # not asked again at once
            assert generator.context_window == 4096
            assert generator.counting == "estimate: 3 characters per token"
            assert generator.count_text("index sync") == math.ceil(len("index sync") / 3)
    said = [r.getMessage() for r in caplog.records if r.name == "chatbot.remote_model"]
    assert [s.split(" (")[0] for s in said] == [
        "model 'echo' of backend 'remote': the server did not answer about max_model_len",
        "model 'echo' of backend 'remote': the server did not answer about tokenize"]
    assert said[0].endswith("so the context window is 4096; it is asked again in 30 s (set "
                            "the variant's context_window to not ask)")
    assert said[1].endswith("so tokens are estimated at 3 characters per token; it is asked "
                            "again in 30 s (set the variant's tokenizer to count them here)")


def test_a_hung_server_holds_its_model_questions_for_seconds_not_timeout_s(monkeypatch) -> None:
    """A server that accepts connections and never answers: the card and the token count are
    asked within ``ASK_TIMEOUT_S``, not the backend's two minutes each, so the answer's error
    comes from the chat request alone (tests/test_remote.py)."""
    import socket
    import time

    from chatbot import remote_model

    monkeypatch.setattr(remote_model, "ASK_TIMEOUT_S", 0.5)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/v1"
        server = remote_model.ServerModel("remote", url, "echo", None, timeout_s=120)
        started = time.monotonic()
        assert server.max_model_len() is None and server.count({"prompt": "hi"}) is None
        assert time.monotonic() - started < 30  # two questions at 120 s each would be 240


def test_a_server_not_up_behind_its_gateway_is_asked_about_its_model_again(
        tmp_path, monkeypatch, caplog) -> None:
    """A proxy's 502 or a busy server's 503 for the card or /tokenize (a server starting up)
    says nothing about the model: the defaults hold until it is asked again, not for good."""
    import json

    from chatbot import remote_model
    from tests.serving import QuietHandler, http_server

    monkeypatch.setattr(remote_model, "ASK_AGAIN_AFTER_S", 0.0)
    asked: list[str] = []

    class Starting(QuietHandler):
        def do_GET(self) -> None:
            self._answer(502, {"data": [{"id": "echo", "max_model_len": 2048}]})

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            self._answer(503, {"count": 7})

        def _answer(self, first: int, then: dict) -> None:
            asked.append(self.path)
            status = first if asked.count(self.path) == 1 else 200
            body = json.dumps(then if status == 200 else {"error": {"message": "wait"}})
            self.reply(status, body.encode(), "application/json")

    with http_server(Starting) as url:
        engine = bot_engine(write_bot_config(tmp_path, url), monkeypatch)
        generator = engine.generator_for(engine.variants["prompt"])
        with caplog.at_level(logging.WARNING, logger="chatbot.remote_model"):
            assert generator.context_window == 4096
            assert generator.count_text("index sync") == math.ceil(len("index sync") / 3)
        assert generator.context_window == 2048
        assert generator.count_text("index sync") == 7
    said = [r.getMessage() for r in caplog.records if r.name == "chatbot.remote_model"]
    assert said == [
        "model 'echo' of backend 'remote': the server did not answer about max_model_len (HTTP "
        "502 Bad Gateway), so the context window is 4096; it is asked again in 0 s (set the "
        "variant's context_window to not ask)",
        "model 'echo' of backend 'remote': the server did not answer about tokenize (HTTP 503 "
        "Service Unavailable), so tokens are estimated at 3 characters per token; it is asked "
        "again in 0 s (set the variant's tokenizer to count them here)"]
