"""The ``chatbot`` command as users run it: a real subprocess on a tiny model."""

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from chatbot.cli import main


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "chatbot", *args], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=900)


def test_help_groups_commands_by_what_users_do() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    sections = [line for line in result.output.splitlines() if line.endswith(":")]
    assert sections[0] == "Options:" and sections[1] == "Chat:" and sections[-1] == "Setup:"
    for command in ("ask", "chat", "config", "models"):
        assert f"  {command} " in result.output


def test_ask_json_prints_one_object(tiny_config) -> None:
    result = run_cli("ask", "--config", str(tiny_config), "--json", "How do I index documents?")
    assert result.returncode == 0, result.stderr
    reply = json.loads(result.stdout)
    assert {"text", "variant", "sources", "timings", "messages"} <= set(reply)
    assert reply["variant"] == "prompt" and isinstance(reply["sources"], list)
    assert reply["messages"][-1]["content"].endswith("How do I index documents?")


def test_errors_are_one_line_without_traceback(tiny_config) -> None:
    result = run_cli("ask", "--config", str(tiny_config), "--variant", "nope", "hi")
    assert result.returncode == 1
    assert result.stderr.strip() == "error: unknown variant 'nope'; variants: prompt"


def test_missing_config_is_a_clear_error(tmp_path) -> None:
    result = run_cli("ask", "--config", str(tmp_path / "none.yaml"), "hi")
    assert result.returncode == 1 and "not found; pass --config PATH" in result.stderr


@pytest.mark.integration
def test_ask_answers_with_the_embedded_default_model(tmp_path) -> None:
    result = run_cli("ask", "--json", "What is chatbot-builder?",
                     env={"CHATBOT_DATA_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    reply = json.loads(result.stdout)
    assert reply["model"] == "embedded:smollm2-135m-instruct" and reply["text"].strip()
