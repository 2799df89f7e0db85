"""The server app (UI mounted on FastAPI) and its optional login, over HTTP in-process."""

import pytest
from fastapi.testclient import TestClient

from chatbot.config import load_config
from chatbot.engine import Engine
from chatbot.errors import ConfigError
from chatbot.server import create_server_app, read_auth
from chatbot.variants import Variant


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "bot.yaml"
    path.write_text("name: Support bot\n")
    return path


def test_no_login_unless_configured(config_file, monkeypatch) -> None:
    monkeypatch.delenv("CHATBOT_USER", raising=False)
    monkeypatch.delenv("CHATBOT_PASSWORD", raising=False)
    assert read_auth(load_config(config_file)) is None


def test_login_pairs_from_environment_and_file(config_file, monkeypatch, tmp_path) -> None:
    (tmp_path / "users.txt").write_text("# team\nana:s3cret:with:colons\n\nbo:pw\n")
    config_file.write_text("server:\n  auth_file: users.txt\n")
    monkeypatch.setenv("CHATBOT_USER", "admin")
    monkeypatch.setenv("CHATBOT_PASSWORD", "pw0")
    assert read_auth(load_config(config_file)) == [
        ("admin", "pw0"), ("ana", "s3cret:with:colons"), ("bo", "pw")]


@pytest.mark.parametrize("content, message", [
    (None, "users.txt not found; create it with user:password lines"),
    ("ana\n", "users.txt:1: expected user:password"),
    ("# nobody\n", "no user:password lines"),
])
def test_bad_auth_file_is_a_clear_error(config_file, tmp_path, content, message) -> None:
    if content is not None:
        (tmp_path / "users.txt").write_text(content)
    config_file.write_text("server:\n  auth_file: users.txt\n")
    with pytest.raises(ConfigError, match=message):
        read_auth(load_config(config_file))


def test_half_set_environment_login_is_refused(config_file, monkeypatch) -> None:
    monkeypatch.setenv("CHATBOT_USER", "admin")
    monkeypatch.delenv("CHATBOT_PASSWORD", raising=False)
    with pytest.raises(ConfigError, match="set both CHATBOT_USER and CHATBOT_PASSWORD"):
        read_auth(load_config(config_file))


def test_server_serves_the_ui_and_asks_for_login_when_set(config_file, monkeypatch,
                                                          echo) -> None:
    engine = Engine({"prompt": Variant("prompt", "base", "rag", True)}, lambda m: echo)
    open_app = create_server_app(engine, load_config(config_file))
    with TestClient(open_app) as client:
        assert client.get("/").status_code == 200
        assert client.get("/config").json()["title"] == "Support bot"
    monkeypatch.setenv("CHATBOT_USER", "ana")
    monkeypatch.setenv("CHATBOT_PASSWORD", "pw")
    guarded = create_server_app(engine, load_config(config_file))
    with TestClient(guarded) as client:
        assert client.get("/config").status_code == 401
        assert client.post("/login", data={"username": "ana", "password": "no"}).status_code == 400
        assert client.post("/login", data={"username": "ana", "password": "pw"}).status_code == 200
        assert client.get("/config").status_code == 200
