"""What a stranger's request can't make the server do: hold a body bigger than any request
needs, fail with Python's words, act for another site's page, or hand a server file to a tab."""

import json

import httpx
import pytest
from fastapi.testclient import TestClient
from gradio_client import Client
from gradio_client.exceptions import AppError

from app.build import bot_documents
from app.server import create_server_app
from chatbot.config_file import load_config
from chatbot.engine import Engine
from chatbot.errors import BackendError, ModelError
from chatbot.variants import Variant
from server_app import config_file, credentials, full_app, log_in, serving  # noqa: F401 (fixtures)


def test_an_upload_larger_than_indexing_takes_is_refused_as_it_arrives(config_file, echo,
                                                                        credentials) -> None:
    """Not written to the server's disk first: one large file must not fill it."""
    config_file.write_text('models:\n  embedder: "hash:64"\nindex:\n  max_file_mb: 0.01\n')
    config = load_config(config_file)
    engine = Engine({"prompt": Variant("prompt", "base", "rag", True)}, lambda m: echo)
    app = create_server_app(engine, config, documents=bot_documents(config),
                            config_path=config_file)
    with TestClient(app) as client:
        small = client.post("/gradio_api/upload", files={"files": ("a.md", b"# A\n" * 100)})
        large = client.post("/gradio_api/upload", files={"files": ("b.md", b"# B\n" * 5000)})
    assert small.status_code == 200
    assert large.status_code == 413 and "File size exceeded" in large.text


def test_an_upload_past_its_limits_is_refused_and_leaves_no_file_behind(
        config_file, echo, credentials, tmp_path, monkeypatch) -> None:
    """One upload may carry 1,000 files of index.max_file_mb each: 50 GB by default in Gradio's
    cache, for a day. An upload refused part-way left the files read so far there too."""
    cache = tmp_path / "gradio"
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(cache))
    config_file.write_text('models:\n  embedder: "hash:64"\n'
                           'index:\n  max_file_mb: 0.01\n  max_upload_mb: 0.02\n')
    config = load_config(config_file)
    engine = Engine({"prompt": Variant("prompt", "base", "rag", True)}, lambda m: echo)
    app = create_server_app(engine, config, documents=bot_documents(config),
                            config_path=config_file)
    part = b"# A\n" * 2000  # 8,000 bytes: within index.max_file_mb
    three = [("files", (f"{n}.md", part)) for n in range(3)]
    stray = [("files", ("a.md", part)), ("notes", ("b.md", part))]
    with TestClient(app) as client:
        refused = [client.post("/gradio_api/upload", files=three)]  # its length said at once
        for files in (three, stray):  # sent without a length: refused as it arrives
            body = httpx.Request("POST", "http://x", files=files)
            chunks = [body.read()[i:i + 4096] for i in range(0, len(body.read()), 4096)]
            refused.append(client.post("/gradio_api/upload", content=iter(chunks),
                                       headers={"content-type": body.headers["content-type"]}))
        fine = client.post("/gradio_api/upload", files=three[:2])
        kept = sorted(p.name for p in cache.rglob("*") if p.is_file())  # cleared at shutdown
    too_large = {"detail": "this upload is larger than the 0.02 MB one upload may hold "
                           "(index.max_upload_mb); upload fewer files at a time"}
    assert [(r.status_code, r.json()) for r in refused] == [(413, too_large), (413, too_large), (
        400, {"detail": "an upload's files go in the form field 'files'; 'notes' is not read"})]
    assert fine.status_code == 200 and kept == ["0.md", "1.md"]


def test_a_web_ui_request_larger_than_the_api_allows_is_refused_as_it_arrives(full_app) -> None:
    """Gradio reads a whole body into memory: its routes take what one API request may send
    (server.max_request_chars), so a stranger can't make the server hold gigabytes."""
    from app.api_body import RequestLimits

    allowed = RequestLimits(1, 200_000).body_bytes  # the default server.max_request_chars
    with TestClient(full_app) as client:
        huge = b'{"data": ["' + b"x" * allowed + b'"], "fn_index": 0, "session_hash": "s"}'
        for path in ("/gradio_api/queue/join", "/gradio_api/call/search", "/login"):
            refused = client.post(path, content=huge,
                                  headers={"content-type": "application/json"})
            assert refused.status_code == 413, path
        fine = client.post("/gradio_api/call/search", json={"data": ["index", 3, "hybrid"]})
        assert fine.status_code == 200


def test_a_web_ui_request_too_large_is_refused_in_words_the_page_shows(full_app) -> None:
    """The page shows a refused request's JSON ``detail``; a plain-text body it showed as
    "Could not parse server response: SyntaxError: Unexpected token 'C'..." (a 4 MB paste)."""
    from app.api_body import RequestLimits

    allowed = RequestLimits(1, 200_000).body_bytes  # the default server.max_request_chars
    huge = b'{"data": ["' + b"x" * allowed + b'"], "fn_index": 0, "session_hash": "s"}'
    with TestClient(full_app) as client:
        for body in (huge, iter([huge[:1000], huge[1000:]])):  # with its length, and without
            refused = client.post("/gradio_api/queue/join", content=body,
                                  headers={"content-type": "application/json"})
            assert refused.status_code == 413
            assert refused.json() == {"detail": f"this request is larger than the {allowed:,} "
                                                "bytes the server reads; shorten the message"}


def test_an_uploads_form_fields_are_held_to_what_an_api_request_may_send(full_app) -> None:
    """An upload's files go to disk, each within index.max_file_mb, but Gradio keeps its other
    form fields in memory with no limit: a stranger's one upload could fill the server's."""
    from app.api_body import RequestLimits

    allowed = RequestLimits(1, 200_000).body_bytes  # the default server.max_request_chars
    file = {"files": ("a.md", b"# A\n" * 100)}
    with TestClient(full_app) as client:
        for fields in ({"note": "x" * (allowed + 1)},
                       {f"note{n}": "x" * (allowed // 4) for n in range(5)}):
            refused = client.post("/gradio_api/upload", files=file, data=fields)
            assert refused.status_code == 413 and "form fields" in refused.text
        fine = client.post("/gradio_api/upload", files=file, data={"note": "x" * 1000})
    assert fine.status_code == 200 and fine.json()[0].endswith("a.md")


def test_a_search_for_nan_passages_is_refused_without_a_python_error(full_app) -> None:
    """JSON as Python reads it takes NaN, which passes the k slider's range check (NaN < 1 is
    false): the search is refused with the slider's own limits, not int(NaN)'s ValueError."""
    with TestClient(full_app) as client:
        events = []
        for k in ("NaN", "3"):
            called = client.post("/gradio_api/call/search",
                                 content=f'{{"data": ["refunds", {k}, "bm25"]}}',
                                 headers={"content-type": "application/json"})
            events.append(client.get(f"/gradio_api/call/search/"
                                     f"{called.json()['event_id']}").text)
    assert events[0] == 'event: complete\ndata: [""]\n\n'
    assert "No passage matches" in events[1]


BAD_CALLS = {'["refunds"]': "/search takes 3 values (query, k, mode), not 1",
             '["refunds", 3, "bm25", "more"]': "/search takes 3 values (query, k, mode), not 4",
             '["refunds", "three", "bm25"]': "/search: k cannot be 'three': it takes a number "
                                             "from 1 to 20",
             '["refunds", 50, "bm25"]': "/search: k cannot be 50: it takes a number from 1 to 20",
             '["refunds", 3, 7]': "/search: mode cannot be 7: it takes one of 'hybrid', "
                                  "'dense', 'bm25'"}
"""A stranger's calls to the search with values the tab can't take, and what each is told."""


def test_a_gradio_api_call_with_values_it_cannot_take_is_refused_in_one_line(full_app, capfd,
                                                                            caplog) -> None:
    """Not Python's words to the caller, nor a traceback each in the server's output."""
    with serving(full_app) as url:
        for data, told in BAD_CALLS.items():
            called = httpx.post(f"{url}gradio_api/call/search", content=f'{{"data": {data}}}',
                                headers={"content-type": "application/json"})
            events = httpx.get(f"{url}gradio_api/call/search/{called.json()['event_id']}")
            assert events.text.startswith('event: error\ndata: {"error": ' + json.dumps(told))
        with pytest.raises(AppError, match="/search: mode cannot be 'fast'"):
            Client(url, verbose=False).predict("refunds", 3, "fast", api_name="/search")
        unknown = [httpx.post(f"{url}gradio_api/call/serch", json={"data": []}),
                   httpx.post(f"{url}gradio_api/queue/join", json={
                       "data": [], "fn_index": 9999, "session_hash": "s1"})]
        with pytest.raises(AppError, match="dataset cannot be 'v9': it takes one of the "
                                           "choices its tab lists, and it lists none yet"):
            Client(url, verbose=False).predict("v9", "a1", "lora", 1, 2e-4, 4, 0, 16, 50,
                                               False, api_name="/start")
    assert [(r.status_code, r.json()) for r in unknown] == [
        (404, {"detail": "no Gradio API route /serch; GET /gradio_api/info lists them"}),
        (404, {"detail": "no Gradio API route with fn_index 9999; GET /gradio_api/info lists "
                         "the routes"})]
    assert "Traceback" not in capfd.readouterr().err
    assert caplog.messages[:6] == [f"refused a Gradio API call: {told}"
                                   for told in BAD_CALLS.values()] + [
        "refused a Gradio API call: /search: mode cannot be 'fast': it takes one of 'hybrid', "
        "'dense', 'bm25'"]


@pytest.mark.parametrize("credentials", [None, "login"], indirect=True)
def test_another_sites_page_cannot_make_a_browser_upload_ask_or_log_in(full_app,
                                                                      credentials) -> None:
    """A form or file upload from a page elsewhere needs no CORS preflight: without this, any
    site its user visits could write files to an open server on the user's machine."""
    with TestClient(full_app) as client:
        if credentials:
            log_in(client, "ana", "pw")
        for site in ("cross-site", "same-site"):
            elsewhere = {"Sec-Fetch-Site": site, "Origin": "https://elsewhere.example"}
            upload = client.post("/gradio_api/upload", files={"files": ("a.md", b"# A")},
                                 headers=elsewhere)
            assert upload.status_code == 403 and f"Sec-Fetch-Site: {site}" in upload.text
            asked = client.post("/v1/chat/completions", headers=elsewhere, json={
                "model": "prompt", "messages": [{"role": "user", "content": "Hi"}]})
            assert asked.status_code == 403
            assert asked.json()["error"]["code"] == "cross_site_request"
            login = client.post("/login", data={"username": "ana", "password": "pw"},
                                headers=elsewhere)
            assert login.status_code == 403
        own_page = client.post("/gradio_api/upload", files={"files": ("a.md", b"# A")},
                               headers={"Sec-Fetch-Site": "same-origin"})
        program = client.post("/gradio_api/upload", files={"files": ("a.md", b"# A")})
        assert own_page.status_code == program.status_code == 200
        assert client.get("/config", headers={"Sec-Fetch-Site": "cross-site"}).status_code == 200


def test_an_open_local_server_answers_only_requests_addressed_to_a_local_name(full_app) -> None:
    """A page of another site can rename its own address to 127.0.0.1 (DNS rebinding) and then
    read and post to an open local server as its own origin: Sec-Fetch-Site says same-origin.
    Its requests still carry its own name in Host."""
    with serving(full_app) as url:
        port = url.rstrip("/").rsplit(":", 1)[1]
        hosts = (f"localhost:{port}", f"127.0.0.1:{port}", f"rebound.example:{port}")
        answers = {host: httpx.get(f"{url}config", headers={"Host": host}) for host in hosts}
        posted = httpx.post(f"{url}gradio_api/call/search", json={"data": ["x", 3, "bm25"]},
                            headers={"Host": "rebound.example"})
    assert [a.status_code for a in answers.values()] == [200, 200, 403]
    assert posted.status_code == 403 and posted.json() == {"detail": (
        "this server listens on 127.0.0.1 with no login, so it answers only requests sent to "
        "localhost or 127.0.0.1, not to rebound.example: a page of another site may have "
        "given its own name that address; to serve it under another name (behind a proxy), "
        "add its name to server.allowed_hosts, or set a login or an API key")}



def test_the_names_in_allowed_hosts_are_answered_too(config_file, echo, credentials) -> None:
    """Behind a proxy that sends its own name in Host (and keeps the login itself), an open
    local server answers the names ``server.allowed_hosts`` lists, and still no other."""
    config_file.write_text('models:\n  embedder: "hash:64"\nserver:\n'
                           '  allowed_hosts: [bot.example]\n')
    engine = Engine({"plain": Variant("plain", "base", "plain", False)}, lambda m: echo)
    app = create_server_app(engine, load_config(config_file), config_path=config_file)
    with serving(app) as url:
        answers = [httpx.get(f"{url}v1/models", headers={"Host": host})
                   for host in ("bot.example", "Bot.Example:8443", "other.example")]
    assert [a.status_code for a in answers] == [200, 200, 403]
    assert "add its name to server.allowed_hosts" in answers[2].json()["error"]["message"]

# -- a request's file must be one uploaded to the server -------------------------------------

FORGED = {"/upload": lambda file: [[file]],
          "/build": lambda file: ["v1", False, [file], "all", 0, 2048, 0, 0.1, False]}
"""The Documents tab's upload and the Training tab's dataset build, each with ``file``."""


@pytest.mark.parametrize("endpoint", FORGED)
def test_a_server_path_is_refused_where_a_file_upload_goes(full_app, isolated_state,
                                                           endpoint, caplog) -> None:
    logs = isolated_state / "logs.sqlite"
    assert logs.is_file()
    with serving(full_app) as url:
        for path in ("/etc/passwd", str(logs)):
            file = {"path": path, "meta": {"_type": "gradio.FileData"}}
            call = httpx.post(f"{url}gradio_api/call{endpoint}",
                              json={"data": FORGED[endpoint](file)})
            events = httpx.get(f"{url}gradio_api/call{endpoint}/{call.json()['event_id']}")
            assert json.loads(events.text.split("data: ")[1])["error"] == (
                f"{endpoint} takes only files uploaded to this server through "
                "/gradio_api/upload (with gradio_client: handle_file(path))")  # nothing of why
            assert f"Cannot move {path}" in caplog.messages[-1]  # the server's log says
        client = Client(url, verbose=False)
        assert "No passage matches" in client.predict("root", 3, "bm25", api_name="/search")
    kept = [p.name for folder in ("uploads", "transcripts", "datasets")
            for p in (isolated_state / folder).glob("*")]
    assert kept == []


# -- a session is one caller's -----------------------------------------------------------


@pytest.mark.parametrize("credentials", ["both"], indirect=True)
def test_two_callers_naming_one_new_session_at_once_get_one_conversation(
        config_file, echo, credentials, tmp_path) -> None:
    """The session is claimed as it is checked: the second caller is refused, even when both
    ask before either answer is logged (a search takes a while)."""
    import sqlite3
    import threading
    import time

    from chatbot.logs import ConversationLog
    from server_app import KEY

    def slow_search(query: str, k: int) -> list:
        time.sleep(0.5)
        return []

    log = ConversationLog(tmp_path / "logs.sqlite")
    engine = Engine({"prompt": Variant("prompt", "base", "rag", True)}, lambda m: echo,
                    search=slow_search, log=log)
    app = create_server_app(engine, load_config(config_file))
    ask = {"model": "prompt", "messages": [{"role": "user", "content": "Mine or yours?"}]}
    statuses: dict[str, int] = {}
    with serving(app) as url:
        ana = httpx.Client(base_url=url)
        assert ana.post("/login", data={"username": "ana", "password": "pw"}).status_code == 200
        keyed = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {KEY}"})
        callers = {"api:ana": ana, "api:api-key": keyed}

        def send(name: str) -> None:
            statuses[name] = callers[name].post("/v1/chat/completions", json=ask, timeout=30,
                                                headers={"X-Session-Id": "shared"}).status_code

        threads = [threading.Thread(target=send, args=(name,)) for name in callers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert sorted(statuses.values()) == [200, 409], statuses
    owner = sqlite3.connect(log.path).execute("SELECT client FROM sessions").fetchone()[0]
    assert statuses[owner] == 200
    assert len(log.conversation("shared").turns) == 2  # the owner's question and answer only


def test_a_web_answer_that_fails_unexpectedly_does_not_show_the_failures_text(
        config_file, echo, credentials, capfd) -> None:
    """An exception's text may name the server's files: the page says only that it failed,
    the server's output has the traceback."""

    class Failing(type(echo)):
        def stream(self, messages, settings, adapter=None, cancel=None):
            yield "first "
            raise RuntimeError("cannot read /srv/bots/private/weights.bin")

    engine = Engine({"prompt": Variant("prompt", "base", "rag", True)}, lambda m: Failing())
    app = create_server_app(engine, load_config(config_file))
    with serving(app) as url:
        call = httpx.post(f"{url}gradio_api/call/respond", json={"data": ["Hi there", "prompt"]})
        events = httpx.get(f"{url}gradio_api/call/respond/{call.json()['event_id']}").text
    assert "event: error" in events and "/srv/bots" not in events
    assert "RuntimeError: cannot read /srv/bots/private/weights.bin" in capfd.readouterr().err


BACKEND = "http://10.0.0.5:8000/v1"


@pytest.mark.parametrize("failure, status", [
    (ModelError("could not load chat model 'base': no config.json in its folder"), 500),
    (BackendError(f"backend 'gpu' ({BACKEND}) stayed busy; try again", BACKEND, busy=True), 503)])
def test_a_model_that_fails_is_told_to_a_tokenize_caller_as_to_a_chat_caller(
        config_file, credentials, failure, status) -> None:
    """The same status, retry headers and message: a busy backend is worth a retry, a model
    that can't be loaded is not, and neither names the backend's address."""

    def model_that_fails(model: str):
        raise failure

    engine = Engine({"prompt": Variant("prompt", "base", "rag", True)}, model_that_fails)
    with serving(create_server_app(engine, load_config(config_file))) as url:
        chat = httpx.post(f"{url}v1/chat/completions",
                          json={"model": "prompt", "messages": [{"role": "user", "content": "hi"}]})
        counted = httpx.post(f"{url}tokenize", json={"prompt": "hi"})
    assert counted.status_code == chat.status_code == status
    retry = ("retry-after", "x-should-retry")
    assert [counted.headers.get(k) for k in retry] == [chat.headers.get(k) for k in retry]
    assert counted.json() == chat.json() and BACKEND not in counted.text


@pytest.mark.parametrize("method, path, body", [
    ("GET", "/v1/models", None), ("GET", "/v1/models/prompt", None),
    ("POST", "/tokenize", {"prompt": "hi"}),
    ("POST", "/v1/corrections", {"turn_id": 1, "text": "The right answer."})])
def test_an_api_route_that_fails_unexpectedly_answers_in_openai_shape_with_an_error_id(
        config_file, credentials, tmp_path, caplog, method, path, body) -> None:
    """Not FastAPI's plain "Internal Server Error", which an OpenAI client can't read: the
    chat route's shape, whose id the operator finds beside the traceback."""
    import sqlite3

    from chatbot.logs import ConversationLog

    def model_that_fails(model: str):
        raise RuntimeError("cannot read /srv/bots/private/weights.bin")

    log = ConversationLog(tmp_path / "logs.sqlite")
    sqlite3.connect(log.path).execute("DROP TABLE turns")  # a damaged log
    engine = Engine({"prompt": Variant("prompt", "base", "rag", True)}, model_that_fails,
                    log=log)
    with serving(create_server_app(engine, load_config(config_file))) as url:
        response = httpx.request(method, f"{url}{path.lstrip('/')}", json=body)
    assert response.status_code == 500 and response.headers["x-should-retry"] == "false"
    error = response.json()["error"]
    assert error["code"] == "internal_error" and error["type"] == "server_error"
    error_id = error["message"].partition("error id ")[2]
    assert len(error_id) == 8, error["message"]
    logged = [r for r in caplog.records if error_id in r.getMessage()]
    assert logged and logged[0].exc_info, [r.getMessage() for r in caplog.records]
    assert path in logged[0].getMessage()


def test_a_model_that_fails_while_answering_is_told_without_its_words(
        config_file, credentials, tiny_model_dir, caplog) -> None:
    """torch's message may name the server's files or memory: the caller gets an error id,
    the server log the traceback, the conversation log the error with the turn."""
    from chatbot.generate import TransformersGenerator

    generator = TransformersGenerator(str(tiny_model_dir), str(tiny_model_dir), device="cpu")
    generator.model.lm_head = None  # its forward pass now fails inside generate()
    engine = Engine({"prompt": Variant("prompt", "base", "rag", True)}, lambda m: generator)
    with serving(create_server_app(engine, load_config(config_file))) as url:
        response = httpx.post(f"{url}v1/chat/completions",
                              json={"model": "prompt", "messages": [{"role": "user",
                                                                     "content": "hi"}]})
    assert response.status_code == 500 and response.headers["x-should-retry"] == "false"
    message = response.json()["error"]["message"]
    assert str(tiny_model_dir) not in response.text and "NoneType" not in response.text
    error_id = message.partition("error id ")[2]
    assert len(error_id) == 8, message
    logged = [r for r in caplog.records if error_id in r.getMessage()]
    assert logged and "NoneType" in str(logged[0].exc_info[1]), message
