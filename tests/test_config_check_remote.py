"""`chatbot config check` asks each remote backend for its `/v1/models` once, and says in one
line per problem what would fail the first question: a server down, a wrong base_url, a key
refused or not set, a model the server does not list, a proxy with no server behind it.

The remote is a second `chatbot serve` on the tiny model (the `remote` fixture), or a small
misbehaving server where one is needed.

    .venv/bin/python -m pytest tests/test_config_check_remote.py -q -n 0
"""

from __future__ import annotations

import json
import re

import pytest
import yaml
from click.testing import CliRunner

from app.cli import main
from tests.serving import QuietHandler, free_port, http_server
from tests.test_remote import REMOTE_KEY, remote, write_bot_config  # noqa: F401 (a fixture)


def check(config, *options: str):
    return CliRunner().invoke(main, ["config", "check", str(config), *options])


@pytest.mark.parametrize("problem, said", [
    ("down", r"is unreachable \(ConnectError: .*\); check that the server is running and "
             r"backends.remote.base_url"),
    ("wrong key", r"refused the API key \(HTTP 401\); check \$TEST_REMOTE_KEY "
                  r"\(backends.remote.api_key_env\)"),
    ("no key", r"refused the API key \(HTTP 401\); check \$TEST_REMOTE_KEY "
               r"\(backends.remote.api_key_env\): it is not set here, so no key was sent"),
    ("model", r"does not list model 'nope' at /v1/models \(it lists: echo\); check "
              r"variants.prompt.model"),
    ("no /v1", r"has no /models \(HTTP 404\); check that backends.remote.base_url is the "
               r"server's /v1 URL")])
def test_config_check_says_what_would_fail_a_remote_backends_answers(
        remote, tmp_path, monkeypatch, problem, said) -> None:  # noqa: F811
    url = (f"http://127.0.0.1:{free_port()}/v1" if problem == "down"
           else remote[0].removesuffix("/v1") if problem == "no /v1" else remote[0])
    config = write_bot_config(tmp_path, url, model="nope" if problem == "model" else "echo")
    if problem == "no key":
        monkeypatch.delenv("TEST_REMOTE_KEY", raising=False)
    else:
        monkeypatch.setenv("TEST_REMOTE_KEY", "wrong" if problem == "wrong key" else REMOTE_KEY)
    result = check(config)
    assert result.exit_code == 1
    line = re.escape(f"{config}: backend 'remote' ({url}) ") + said + "\n"
    assert re.fullmatch(line, result.output), result.output


def test_config_check_says_ok_of_a_remote_backend_that_serves_the_model(
        remote, tmp_path, monkeypatch) -> None:  # noqa: F811
    monkeypatch.setenv("TEST_REMOTE_KEY", REMOTE_KEY)
    config = write_bot_config(tmp_path, remote[0])
    result = check(config)
    assert (result.exit_code, result.output) == (0, f"{config}: ok\n")


class Listing(QuietHandler):
    """A server that lists models m1 and m2, and counts how often it was asked."""

    asked: list[str]

    def do_GET(self) -> None:
        self.asked.append(self.path)
        body = json.dumps({"object": "list", "data": [{"id": "m1"}, {"id": "m2"}]}).encode()
        self.reply(200, body, "application/json")


def test_config_check_asks_each_backend_once_and_names_each_problem(tmp_path) -> None:
    """Two models of one server are one question; a model listed on neither server is a line
    for each variant, with a file problem found as before; --offline asks nothing."""
    first, second = (type("First", (Listing,), {"asked": []}),
                     type("Second", (Listing,), {"asked": []}))
    with http_server(first) as one, http_server(second) as two:
        config = tmp_path / "bot.yaml"
        config.write_text(yaml.safe_dump({
            "backends": {"one": {"base_url": one}, "two": {"base_url": two}},
            "variants": {"a": {"backend": "one", "model": "m1"},
                         "b": {"backend": "one", "model": "m2"},
                         "c": {"backend": "two", "model": "m3", "template": "nothere"}},
            "default_variant": "a"}))
        result = check(config)
        offline = check(config, "--offline")
    assert result.exit_code == 1
    assert result.output.splitlines()[1:] == [
        f"{config}: backend 'two' ({two}) does not list model 'm3' at /v1/models (it lists: "
        "m1, m2); check variants.c.model"]
    assert result.output.startswith(f"{config}: variants.c.template: ")
    assert first.asked == second.asked == ["/v1/models"]
    assert offline.exit_code == 1 and offline.output.splitlines() == \
        result.output.splitlines()[:1]


@pytest.mark.parametrize("status, kind, body, said", [
    (502, "text/html", b"<html>Bad Gateway</html>",
     "answered /models with HTTP 502 (Bad Gateway); check that the server is running, and its "
     "log"),
    (200, "text/html", b"<html>Please sign in</html>",
     "answered /models with no model list (text/html); check that backends.remote.base_url is "
     "the server's /v1 URL"),
    (200, "application/json", b'{"data": ["m1"]}',  # names, not model objects: no vLLM
     "answered /models with no model list (application/json); check that "
     "backends.remote.base_url is the server's /v1 URL")])
def test_config_check_names_a_proxy_with_no_server_behind_it_or_some_other_web_page(
        tmp_path, monkeypatch, status, kind, body, said) -> None:
    class Page(QuietHandler):
        def do_GET(self) -> None:
            self.reply(status, body, kind)

    monkeypatch.setenv("TEST_REMOTE_KEY", REMOTE_KEY)
    with http_server(Page) as url:
        config = write_bot_config(tmp_path, url)
        result = check(config)
    assert (result.exit_code, result.output) == (
        1, f"{config}: backend 'remote' ({url}) {said}\n")


def test_config_check_and_serve_name_a_base_url_that_redirects(tmp_path, monkeypatch) -> None:
    """An http:// base_url of a server behind https: its /models answers once the redirect is
    followed, but the redirect turns every chat request's POST into a GET the server refuses.
    `config check` said ok; `serve` warned of an HTTP 301 and told to check the server's log."""
    from tests.test_remote import bot_engine

    class Redirecting(QuietHandler):
        def do_GET(self) -> None:
            if self.path.startswith("/secure/"):
                self.reply(200, json.dumps({"data": [{"id": "echo"}]}).encode(),
                           "application/json")
            else:
                self.reply(301, headers={"Location": f"/secure{self.path}"})

    monkeypatch.setenv("TEST_REMOTE_KEY", REMOTE_KEY)
    with http_server(Redirecting) as url:
        config = write_bot_config(tmp_path, url)
        result = check(config)
        engine = bot_engine(config, monkeypatch)
        served = engine.generator_for(engine.variant("prompt")).server_problem()
    moved_to = url.replace("/v1", "/secure/v1")
    said = (f"backend 'remote' ({url}) redirects to {moved_to} (HTTP 301), which turns a chat "
            "request's POST into a GET that servers refuse; set backends.remote.base_url to "
            f"{moved_to}")
    assert (result.exit_code, result.output) == (1, f"{config}: {said}\n")
    assert served == said
