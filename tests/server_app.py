"""The server app with every tab, behind one credential setup of ``credentials``; fixtures for
the server's tests (``test_server.py``, ``test_server_requests.py``)."""

import contextlib
import threading
import time
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.build import bot_documents
from app.server import create_server_app
from chatbot.config_file import load_config
from chatbot.engine import Engine
from chatbot.variants import Variant
from serving import free_port


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "bot.yaml"
    path.write_text("name: Support bot\n")
    return path


KEY = "k-123"
CREDENTIALS = {"key": {"CHATBOT_API_KEY": KEY},
               "login": {"CHATBOT_USER": "ana", "CHATBOT_PASSWORD": "pw"},
               "both": {"CHATBOT_API_KEY": KEY, "CHATBOT_USER": "ana", "CHATBOT_PASSWORD": "pw"}}


@pytest.fixture
def credentials(request, monkeypatch) -> dict:
    """The environment of one credential setup (``request.param``); none by default."""
    for name in ("CHATBOT_API_KEY", "CHATBOT_USER", "CHATBOT_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    chosen = CREDENTIALS.get(getattr(request, "param", None), {})
    for name, value in chosen.items():
        monkeypatch.setenv(name, value)
    return chosen


@pytest.fixture
def full_app(config_file, echo, credentials) -> FastAPI:
    """The server with every tab (Chat, Documents, Training, Arena, Dashboard)."""
    config_file.write_text('name: Support bot\nmodels:\n  embedder: "hash:64"\n'
                           'retrieval:\n  min_score: null\nvariants:\n  prompt: {}\n'
                           '  plain: {template: plain, retrieval: false}\n')
    config = load_config(config_file)
    engine = Engine({"prompt": Variant("prompt", "base", "rag", True),
                     "plain": Variant("plain", "base", "plain", False)}, lambda m: echo)
    return create_server_app(engine, config, documents=bot_documents(config),
                             config_path=config_file)


def gradio_endpoints(client: TestClient, **auth) -> list[str]:
    info = client.get("/gradio_api/info", **auth)
    assert info.status_code == 200
    return list(info.json()["named_endpoints"])


def log_in(client: TestClient, user: str, password: str) -> None:
    assert client.post("/login", data={"username": user, "password": password}).status_code == 200


@contextlib.contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """``app`` on uvicorn at a free port of 127.0.0.1; yields its URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.should_exit = True
        thread.join(10)
