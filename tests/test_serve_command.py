"""``chatbot serve`` as a user starts it: what it refuses before loading anything, and what it
says about who may reach it."""

import pytest
import yaml
from click.testing import CliRunner

from app.auth import Credentials, check_exposure
from app.cli import main as cli
from chatbot.errors import ConfigError
from serving import chatbot_serve
from test_server import KEY, credentials  # noqa: F401 (a fixture, found here by its name)


def test_serve_refuses_an_open_non_loopback_address(tiny_config, credentials) -> None:
    # 192.0.2.1 is a documentation address no machine has: were it not refused, it could not
    # be bound either
    result = CliRunner().invoke(cli, ["serve", "--config", str(tiny_config),
                                      "--host", "192.0.2.1"])
    assert result.exit_code == 1
    assert "refusing to listen on 192.0.2.1 with no login and no API key" in result.output
    assert "--insecure" in result.output and "loading" not in result.output


def test_serve_refuses_an_ab_arm_it_cant_serve(tiny_config) -> None:
    config = yaml.safe_load(tiny_config.read_text())
    config.update(variants={"prompt": {}, "tuned": {"adapter": "adapters/never-trained"}},
                  ab={"enabled": True, "weights": {"prompt": 0.5, "tuned": 0.5}})
    tiny_config.write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(cli, ["serve", "--config", str(tiny_config)])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: A/B variant 'tuned' can't be served: adapter directory")
    assert "or give it weight 0 in ab.weights" in result.output


@pytest.mark.parametrize("host, refused", [("127.0.0.1", False), ("::1", False),
                                           ("localhost", False), ("0.0.0.0", True),
                                           ("192.168.1.5", True), ("bot.example.com", True)])
def test_only_loopback_may_be_open_unless_insecure(host, refused) -> None:
    open_ = Credentials()
    if refused:
        with pytest.raises(ConfigError, match=f"refusing to listen on {host}"):
            check_exposure(host, open_, insecure=False)
    else:
        check_exposure(host, open_, insecure=False)
    check_exposure(host, open_, insecure=True)
    check_exposure(host, Credentials(api_key=KEY), insecure=False)


@pytest.mark.parametrize("credentials, access", [
    (None, "access: open: no login and no API key are set, so anyone who reaches {url}/ can "
           "use the web UI, /gradio_api and /v1"),
    ("both", "access: protected: the web UI, /gradio_api and /v1 all require a credential: "
             "log in as its one user or send $CHATBOT_API_KEY as 'Authorization: Bearer "
             "KEY' (or as the login password)")], indirect=["credentials"])
def test_serve_says_which_routes_are_protected(tiny_config, credentials, access) -> None:
    with chatbot_serve(tiny_config) as (url, server):
        server.terminate()
        output = server.communicate(timeout=20)[0]
    assert access.format(url=url) in output.splitlines()
