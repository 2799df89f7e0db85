"""`chatbot ask` on a variant that generates on a remote server, run as a user runs it: the
terminal shows what to do about the server, not the fallbacks on the way to that error."""

from __future__ import annotations

import re

import pytest
import yaml

from tests.serving import QuietHandler, free_port, http_server
from tests.test_cli import run_cli
from tests.test_remote import events, write_bot_config


def ask_remote(tmp_path, url: str, command: str = "ask"):
    """``chatbot ask Hello?``, or ``chatbot chat`` with it piped in, over a remote at ``url``."""
    config = write_bot_config(tmp_path, url)
    settings = yaml.safe_load(config.read_text())
    settings["variants"]["prompt"]["retrieval"] = False  # no index note beside what is tested
    config.write_text(yaml.safe_dump(settings))
    question = ["Hello?"] if command == "ask" else []
    return run_cli(command, "--config", str(config), *question, stdin="Hello?\n",
                   env={"CHATBOT_DATA_DIR": str(tmp_path / "data")})


@pytest.mark.parametrize("command, code", [("ask", 1), ("chat", 0)])
def test_a_backend_that_is_down_is_one_line_naming_it_and_what_to_do(tmp_path, command,
                                                                     code) -> None:
    result = ask_remote(tmp_path, f"http://127.0.0.1:{free_port()}/v1", command)
    assert result.returncode == code
    assert re.fullmatch(r"error: backend 'remote' \(http://127\.0\.0\.1:\d+/v1\) is unreachable "
                        r"after 3 retries \(.*\); check that the server is running and "
                        r"backends\.remote\.base_url\n", result.stderr), result.stderr


class AnswersHello(QuietHandler):
    def do_POST(self) -> None:
        if self.asked_to_chat():
            self.reply(200, events(("Hello", "stop")), "text/event-stream")


def test_a_backend_that_answers_still_has_its_fallbacks_shown(tmp_path) -> None:
    """No /tokenize and no max_model_len: the estimates in use are said, as before."""
    with http_server(AnswersHello) as url:
        result = ask_remote(tmp_path, url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Hello\n")
    said = result.stderr.splitlines()
    assert len(said) == 2 and all(line.startswith("model 'echo' of backend 'remote': ")
                                  for line in said), result.stderr
    assert "the context window is 4096" in said[0] and "estimated" in said[1]
