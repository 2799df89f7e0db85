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


def test_api_and_ui_share_the_server_and_the_api_key_guards_only_the_api(
        config_file, monkeypatch, echo) -> None:
    monkeypatch.setenv("CHATBOT_API_KEY", "k-123")
    engine = Engine({"prompt": Variant("prompt", "base", "rag", True)}, lambda m: echo)
    with TestClient(create_server_app(engine, load_config(config_file))) as client:
        assert client.get("/v1/models").status_code == 401
        models = client.get("/v1/models", headers={"Authorization": "Bearer k-123"}).json()
        assert [m["id"] for m in models["data"]] == ["prompt"]
        assert client.get("/").status_code == 200


def test_ab_on_assigns_a_sticky_hidden_variant_and_adds_arena_and_dashboard(
        config_file, echo) -> None:
    import gradio as gr

    from chatbot.ab import AbStore
    from chatbot.server import ab_parts
    from chatbot.ui import build_app
    from chatbot.ui.chat import ChatActions, new_state

    config_file.write_text("variants:\n  prompt: {}\n  plain: {template: plain, retrieval: false}\n"
                           "ab:\n  enabled: true\n  weights: {prompt: 0, plain: 1}\n")
    config = load_config(config_file)
    variants = {"prompt": Variant("prompt", "base", "rag", True),
                "plain": Variant("plain", "base", "plain", False)}
    engine = Engine(variants, lambda m: echo)
    assign, show_names, tabs = ab_parts(engine, config)
    state = new_state()
    assert assign(state.session_id) == "plain" and show_names is False
    list(ChatActions(engine, assign).respond("hi there", state, "prompt"))
    assert state.answers[0].reply.variant == "plain"  # the assignment, not the choice
    assert AbStore(config.data_path / "logs.sqlite").assignments() == {"plain": 1}
    app = build_app(engine, assign_variant=assign, show_variant_names=show_names, tabs=tabs)
    labels = [b.label for b in app.blocks.values() if isinstance(b, gr.Tab)]
    assert labels == ["Chat", "Arena", "Dashboard"]
    variant_box = next(b for b in app.blocks.values() if b.elem_id == "cb-variant")
    assert variant_box.visible is False


def test_one_variant_and_ab_off_means_chat_only(config_file, echo) -> None:
    from chatbot.server import ab_parts

    engine = Engine({"prompt": Variant("prompt", "base", "rag", True)}, lambda m: echo)
    assert ab_parts(engine, load_config(config_file)) == (None, True, [])
