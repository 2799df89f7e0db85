"""The server app (UI mounted on FastAPI) behind its credentials: over HTTP in-process, and on
uvicorn with the real gradio_client and openai clients."""

import time

import httpx
import openai
import pytest
from fastapi.testclient import TestClient
from gradio_client import Client, handle_file

from app.auth import read_auth
from app.server import create_server_app
from chatbot.config_file import load_config
from chatbot.engine import Engine
from chatbot.errors import ConfigError
from chatbot.variants import Variant
from server_app import (KEY, config_file, credentials, full_app,  # noqa: F401 (fixtures)
                        gradio_endpoints, log_in, serving)


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
    (b"ana:p\xe4ss\n", "users.txt is not UTF-8 text; save it as UTF-8"),  # Latin-1
])
def test_bad_auth_file_is_a_clear_error(config_file, tmp_path, content, message) -> None:
    if isinstance(content, bytes):
        (tmp_path / "users.txt").write_bytes(content)
    elif content is not None:
        (tmp_path / "users.txt").write_text(content)
    config_file.write_text("server:\n  auth_file: users.txt\n")
    with pytest.raises(ConfigError, match=message):
        read_auth(load_config(config_file))


def test_half_set_environment_login_is_refused(config_file, monkeypatch) -> None:
    monkeypatch.setenv("CHATBOT_USER", "admin")
    monkeypatch.delenv("CHATBOT_PASSWORD", raising=False)
    with pytest.raises(ConfigError, match="set both CHATBOT_USER and CHATBOT_PASSWORD"):
        read_auth(load_config(config_file))


def test_ab_on_assigns_a_sticky_hidden_variant_and_adds_arena_and_dashboard(
        config_file, echo) -> None:
    import gradio as gr

    from chatbot.ab import AbStore
    from app.server import ab_parts
    from app.ui import build_app
    from app.ui.chat import ChatActions, new_state

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
    from app.server import ab_parts

    engine = Engine({"prompt": Variant("prompt", "base", "rag", True)}, lambda m: echo)
    assert ab_parts(engine, load_config(config_file)) == (None, True, [])


# -- credentials: one rule for every route --------------------------------------------------

STATE_CHANGING = {"/upload", "/remove", "/build", "/start", "/stop", "/respond", "/rate",
                  "/comment"}
"""Gradio API endpoints that write: documents, datasets, training runs, the conversation log."""
ROUTES = [("GET", "/config"), ("GET", "/gradio_api/info"), ("POST", "/gradio_api/upload"),
          ("POST", "/gradio_api/queue/join"), ("GET", "/gradio_api/queue/data"),
          ("GET", "/gradio_api/file=/etc/hostname"), ("GET", "/gradio_api/heartbeat/x"),
          ("GET", "/v1/models"), ("GET", "/v1/models/prompt"), ("POST", "/v1/chat/completions"),
          ("POST", "/tokenize"), ("POST", "/v1/load_lora_adapter"),
          ("POST", "/v1/unload_lora_adapter")]


@pytest.mark.parametrize("credentials", ["key", "login", "both"], indirect=True)
def test_with_any_credential_configured_every_route_refuses_anonymous_callers(
        full_app, credentials) -> None:
    with TestClient(full_app) as client:
        if "CHATBOT_API_KEY" in credentials:
            log_in(client, "anyone", KEY)  # the key is a login password too
        else:
            log_in(client, "ana", "pw")
        endpoints = gradio_endpoints(client)
        assert STATE_CHANGING <= set(endpoints)
        routes = ROUTES + [("POST", f"/gradio_api/call{name}") for name in endpoints]
        client.cookies.clear()
        for n, (method, path) in enumerate(routes):
            assert client.request(method, path, json={"data": []}).status_code == 401, path
            guesser = TestClient(full_app, client=(f"2001:db8::{n:x}", 5000))  # one guess each
            wrong_key = guesser.request(method, path, json={"data": []},
                                        headers={"Authorization": "Bearer wrong"})
            assert wrong_key.status_code == 401, (method, path)
        login_page = client.get("/")
        assert login_page.status_code == 200 and '"auth_required":true' in login_page.text
        assert "cb-upload" not in login_page.text  # the form, not the app
        # nor the description of the API its own address refuses (endpoints, variant names)
        assert "window.gradio_api_info = null;" in login_page.text
        assert "/respond" not in login_page.text and "plain" not in login_page.text
        assert client.get("/theme.css").status_code == 200
        refused = client.post("/tokenize", json={"prompt": "hi"})
        assert refused.json()["error"]["code"] == "invalid_api_key"  # vLLM's route: its shape
        user, password = ("ana", "pw") if "CHATBOT_USER" in credentials else ("anyone", KEY)
        log_in(client, user, password)
        assert "/respond" in client.get("/").text  # the app's own page keeps it


@pytest.mark.parametrize("credentials", ["key", "both"], indirect=True)
def test_the_api_key_opens_every_kind_of_route(full_app) -> None:
    bearer = {"headers": {"Authorization": f"Bearer {KEY}"}}
    with TestClient(full_app) as client:
        assert client.get("/config", **bearer).json()["title"] == "Support bot"
        assert "/upload" in gradio_endpoints(client, **bearer)
        assert client.get("/v1/models", **bearer).status_code == 200
        assert client.post("/gradio_api/upload", files={"files": ("a.md", b"# A")},
                           **bearer).status_code == 200


def test_an_api_key_set_with_a_line_break_is_the_key_without_it(config_file, echo, credentials,
                                                                 monkeypatch) -> None:
    """A key read from a file keeps its line break (``\\r`` in an env file saved on Windows);
    a bearer header can't carry one, so no client could ever be let in."""
    monkeypatch.setenv("CHATBOT_API_KEY", f"{KEY}\r\n")
    engine = Engine({"plain": Variant("plain", "base", "plain", False)}, lambda m: echo)
    bearer = {"Authorization": f"Bearer {KEY}"}
    with TestClient(create_server_app(engine, load_config(config_file))) as client:
        assert client.get("/v1/models", headers=bearer).status_code == 200
        assert client.get("/v1/models").status_code == 401


TOO_MANY_FAILURES = "too many failed logins or wrong API keys from this address; try again in "
"""The throttle's refusal, at the login page and the API alike: either may have set it off."""


@pytest.mark.parametrize("credentials", ["login"], indirect=True)
def test_an_address_that_keeps_guessing_passwords_must_wait(full_app) -> None:
    from app.auth import MAX_FAILED_LOGINS

    with TestClient(full_app, client=("192.0.2.7", 5000)) as guesser:
        for attempt in range(MAX_FAILED_LOGINS):
            wrong = guesser.post("/login", data={"username": "ana", "password": f"pw{attempt}"})
            assert wrong.status_code == 400
        refused = guesser.post("/login", data={"username": "ana", "password": "pw"})
        assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 800
        assert refused.json()["detail"].startswith(TOO_MANY_FAILURES)
    with TestClient(full_app, client=("192.0.2.8", 5000)) as someone_else:
        log_in(someone_else, "ana", "pw")


@pytest.mark.parametrize("credentials", ["both"], indirect=True)
def test_an_address_that_keeps_guessing_api_keys_must_wait(full_app) -> None:
    """A wrong bearer key counts as a failed login of its address: the key is the login
    password too, so a guesser gets one allowance for both."""
    from app.auth import MAX_FAILED_LOGINS

    def api(key: str, address: str) -> openai.OpenAI:  # uvicorn trusts a local proxy's header
        return openai.OpenAI(base_url=f"{url}v1", api_key=key, max_retries=0,
                             default_headers={"X-Forwarded-For": address})

    guesser = "192.0.2.7"
    with serving(full_app) as url:
        for attempt in range(MAX_FAILED_LOGINS - 1):
            with pytest.raises(openai.AuthenticationError):
                api(f"guess-{attempt}", guesser).models.list()
        page = httpx.get(url, headers={"Authorization": "Bearer guess",
                                       "X-Forwarded-For": guesser})
        assert "window.gradio_api_info = null;" in page.text  # the login page: a wrong key
        with pytest.raises(openai.RateLimitError) as refused:
            api(KEY, guesser).models.list()  # the right key too: it is not even checked
        headers = refused.value.response.headers
        assert int(headers["Retry-After"]) > 800 and headers["x-should-retry"] == "false"
        assert refused.value.code == "too_many_failed_attempts"
        assert refused.value.body["message"].startswith(TOO_MANY_FAILURES)
        tokenize = httpx.post(f"{url}tokenize", json={"prompt": "hi"},
                              headers={"Authorization": f"Bearer {KEY}",
                                       "X-Forwarded-For": guesser})
        assert tokenize.json()["error"]["code"] == "too_many_failed_attempts"
        login = httpx.post(f"{url}login", data={"username": "ana", "password": "pw"},
                           headers={"X-Forwarded-For": guesser})
        assert login.status_code == 429  # the login page shows its detail: keys were the cause
        assert login.json()["detail"].startswith(TOO_MANY_FAILURES)
        assert [m.id for m in api(KEY, "192.0.2.8").models.list().data][:2] == ["prompt",
                                                                               "plain"]


@pytest.mark.parametrize("credentials", ["both"], indirect=True)
def test_the_api_key_logs_in_under_a_name_but_never_as_a_configured_user(full_app) -> None:
    """The name typed signs corrections: the key holder can't sign as "ana"."""
    with TestClient(full_app) as client:
        for look_alike in ("ana", "Ana", "ana\u200b", " ana", "\uff41na"):  # zero-width, full-width
            refused = client.post("/login", data={"username": look_alike, "password": KEY})
            assert refused.status_code == 400, look_alike
        log_in(client, "ops", KEY)


@pytest.mark.parametrize("credentials", ["login", "both"], indirect=True)
def test_a_web_login_opens_every_kind_of_route(full_app) -> None:
    with TestClient(full_app) as client:
        assert client.post("/login", data={"username": "ana", "password": "no"}).status_code == 400
        assert client.get("/config").status_code == 401
        log_in(client, "ana", "pw")
        assert client.get("/config").json()["title"] == "Support bot"
        assert "/upload" in gradio_endpoints(client)
        assert [m["id"] for m in client.get("/v1/models").json()["data"]][:2] == ["prompt",
                                                                                 "plain"]


def test_with_no_credential_everything_is_open(full_app) -> None:
    with TestClient(full_app) as client:
        assert client.get("/config").status_code == 200
        assert "/upload" in gradio_endpoints(client)
        assert client.get("/v1/models").status_code == 200


@pytest.mark.parametrize("credentials", ["both"], indirect=True)
def test_real_clients_need_the_key_or_a_login(full_app, tmp_path) -> None:
    note = tmp_path / "refunds.md"
    note.write_text("# Refunds\n\nRefunds take five days.\n")
    with serving(full_app) as url:
        with pytest.raises(openai.AuthenticationError) as wrong:
            openai.OpenAI(base_url=f"{url}v1", api_key="guess", max_retries=0).models.list()
        assert wrong.value.code == "invalid_api_key"
        assert wrong.value.body["message"] == "the API key is not valid"
        bare = httpx.get(f"{url}v1/models")
        assert bare.status_code == 401
        assert "requires a credential" in bare.json()["error"]["message"]
        api = openai.OpenAI(base_url=f"{url}v1", api_key=KEY, max_retries=0)
        answer = api.chat.completions.create(model="plain",
                                             messages=[{"role": "user", "content": "hi there"}])
        assert answer.choices[0].message.content
        with pytest.raises(Exception, match="credentials were not provided"):
            Client(url, verbose=False)
        for client in (Client(url, auth=("ana", "pw"), verbose=False),
                       Client(url, auth=("anyone", KEY), verbose=False),
                       Client(url, headers={"Authorization": f"Bearer {KEY}"}, verbose=False)):
            client.predict([handle_file(str(note))], api_name="/upload")
            assert "Refunds take" in client.predict("refunds", 3, "bm25", api_name="/search")


def test_a_file_uploaded_through_gradio_is_indexed(full_app, tmp_path) -> None:
    note = tmp_path / "pets.md"
    note.write_text("# Pets\n\nCats sleep sixteen hours a day.\n")
    with serving(full_app) as url:
        client = Client(url, verbose=False)
        status = client.predict([handle_file(str(note))], api_name="/upload")[0]
        assert status.startswith("Indexed 1 of 1 file: 1 added")
        assert "Cats sleep" in client.predict("cats sleep", 3, "bm25", api_name="/search")


def test_web_visitors_are_answered_together_up_to_max_batch(config_file, echo, tmp_path,
                                                            credentials) -> None:
    """One slow answer (a busy model, a hung backend) must not hold every other visitor."""
    from chatbot.logs import ConversationLog

    config_file.write_text('models:\n  embedder: "hash:64"\n  max_batch: 2\n')
    log = ConversationLog(tmp_path / "logs.sqlite")
    engine = Engine({"prompt": Variant("prompt", "base", "plain", False)}, lambda m: echo,
                    log=log)
    echo.flowing.clear()  # every answer holds after its first word
    with serving(create_server_app(engine, load_config(config_file))) as url:
        jobs = [Client(url, verbose=False).submit(f"question {i} of two", "prompt",
                                                  api_name="/respond") for i in range(2)]

        def answering() -> int:
            return log._db.execute("SELECT COUNT(*) FROM turns WHERE role = 'assistant' "
                                   "AND status = 'pending'").fetchone()[0]

        deadline = time.monotonic() + 30
        while answering() < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert answering() == 2  # the second started while the first was still answering
        echo.flowing.set()
        for job in jobs:
            job.result(timeout=30)
    assert answering() == 0


@pytest.mark.parametrize("credentials", ["login"], indirect=True)
def test_failed_logins_from_many_addresses_are_remembered_within_a_bound(full_app,
                                                                         monkeypatch) -> None:
    """A stranger with many addresses (an IPv6 block has billions) can't make the server keep
    a record for each, growing its memory and the work of every login; the address guessing
    now is still refused."""
    from app import auth

    monkeypatch.setattr(auth, "REMEMBERED_ADDRESSES", 20)
    throttled = auth.LoginThrottle(full_app)
    for n in range(60):
        guesser = TestClient(throttled, client=(f"2001:db8::{n:x}", 5000))
        assert guesser.post("/login", data={"username": "ana", "password": "no"}).status_code == 400
    assert len(throttled.attempts.failures) <= 20
    guesser = TestClient(throttled, client=("2001:db8::ffff", 5000))
    for attempt in range(auth.MAX_FAILED_LOGINS):
        guesser.post("/login", data={"username": "ana", "password": f"pw{attempt}"})
    assert guesser.post("/login", data={"username": "ana", "password": "pw"}).status_code == 429
