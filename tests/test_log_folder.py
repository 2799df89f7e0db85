"""A folder where the conversation log's file belongs (``<data_dir>/logs.sqlite``): every
command that opens the log says so and what to do, instead of reading it as an empty log."""

from __future__ import annotations

import pytest
import yaml
from click.testing import CliRunner

from app.cli import main as cli
from chatbot.errors import LogError
from chatbot.logs import ConversationLog
from training.data.from_log import read_log


def folder_message(path) -> str:
    return (f"the conversation log {path} is a folder, not a file; move that folder aside "
            f"(mv {path} {path}.folder) and a new log is started, or set data_dir to another "
            "folder")


@pytest.mark.parametrize("command", [
    ["data", "build", "--name", "v1"],
    ["data", "build", "--kind", "preference", "--name", "prefs"],
    ["logs", "list"],
    ["ab", "report"],
])
def test_a_folder_in_the_logs_place_is_named_by_every_command(tmp_path, monkeypatch, command):
    """It read as 'the conversation log has no finished answers yet' (or as no log at all)."""
    folder = tmp_path / "bot" / "logs.sqlite"
    folder.mkdir(parents=True)
    monkeypatch.setenv("CHATBOT_DATA_DIR", str(tmp_path / "bot"))
    result = CliRunner().invoke(cli, command)
    assert result.exit_code == 1
    assert result.stderr == f"error: {folder_message(folder)}\n"


def test_a_folder_in_the_logs_place_is_refused_when_the_log_is_opened(tmp_path):
    folder = tmp_path / "logs.sqlite"
    folder.mkdir()
    for open_log in (ConversationLog, read_log):
        with pytest.raises(LogError) as error:
            open_log(folder)
        assert str(error.value) == folder_message(folder)


def test_serve_names_a_folder_in_the_logs_place(tiny_config):
    folder = tiny_config.parent / "data" / "logs.sqlite"
    folder.mkdir(parents=True)
    result = CliRunner().invoke(cli, ["serve", "--config", str(tiny_config)])
    assert result.exit_code == 1
    assert result.stderr.endswith(f"error: {folder_message(folder)}\n")
