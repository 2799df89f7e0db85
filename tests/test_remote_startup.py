"""`chatbot serve` with a remote default variant says at start what would fail its first
answer (the server down, the key refused, the model not served), and starts anyway, so the
operator hears of it before a user does and the bot answers once the server is fixed.

The remote is a second `chatbot serve` on the tiny model (the `remote` fixture)."""

from __future__ import annotations

import pytest

from tests.serving import chatbot_serve, free_port
from tests.test_remote import REMOTE_KEY, remote, write_bot_config  # noqa: F401 (a fixture)


@pytest.mark.parametrize("problem, said", [
    ("down", r"is unreachable \(ConnectError: .*\); check that the server is running and "
             r"backends.remote.base_url"),
    ("key", r"refused the API key \(HTTP 401\); check \$TEST_REMOTE_KEY "
            r"\(backends.remote.api_key_env\)"),
    ("model", r"does not list model 'nope' at /v1/models \(it lists: echo\); check the "
              r"variant's model"),
    ("no /v1", r"has no /models \(HTTP 404\); check that backends.remote.base_url is the "
               r"server's /v1 URL")])
def test_serve_warns_at_start_of_a_backend_that_would_fail_answers(remote, tmp_path,  # noqa: F811
                                                                   problem, said) -> None:
    import re

    url = (f"http://127.0.0.1:{free_port()}/v1" if problem == "down"
           else remote[0].removesuffix("/v1") if problem == "no /v1" else remote[0])
    config = write_bot_config(tmp_path, url, model="nope" if problem == "model" else "echo")
    key = "wrong" if problem == "key" else REMOTE_KEY
    with chatbot_serve(config, data_dir=tmp_path / "data",
                       env={"TEST_REMOTE_KEY": key}) as (_, server):
        pass  # it started: the bot answers once the server is fixed
    output = server.stdout.read()
    warning = re.escape(f"warning: backend 'remote' ({url}) ") + said + \
        "; answers fail until it is fixed\n"
    assert re.search(warning, output), output


def test_serve_says_nothing_of_a_backend_that_is_ready(remote, tmp_path) -> None:  # noqa: F811
    with chatbot_serve(write_bot_config(tmp_path, remote[0]), data_dir=tmp_path / "data",
                       env={"TEST_REMOTE_KEY": REMOTE_KEY}) as (_, server):
        pass
    assert "warning: backend" not in server.stdout.read()


def test_serve_warns_of_each_ab_arms_backend_once(remote, tmp_path) -> None:  # noqa: F811
    """An A/B arm on a server that is down fails each of its (sticky) users on every turn."""
    import yaml

    config = write_bot_config(tmp_path, remote[0])
    settings = yaml.safe_load(config.read_text())
    down = f"http://127.0.0.1:{free_port()}/v1"
    settings["backends"]["spare"] = {"base_url": down}
    settings["variants"] |= {"again": {"backend": "remote", "model": "echo", "template": "rag"},
                             "spare": {"backend": "spare", "model": "echo", "template": "rag"}}
    settings["ab"] = {"enabled": True, "weights": {"prompt": 1, "again": 1, "spare": 1}}
    settings["default_variant"] = "spare"
    config.write_text(yaml.safe_dump(settings))
    with chatbot_serve(config, "--variant", "prompt", data_dir=tmp_path / "data",
                       env={"TEST_REMOTE_KEY": REMOTE_KEY}) as (_, server):
        pass
    output = server.stdout.read()
    assert output.count("warning: backend") == 1, output
    assert f"warning: backend 'spare' ({down}) is unreachable" in output
