"""Reading a config file: a missing, undecodable, repeated-key, self-referencing or
device path is one clear error naming the file, from ``load_config`` and ``config check``."""

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from app.cli import main
from chatbot.config_file import load_config
from chatbot.errors import ConfigError


def test_load_config_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found; check the path"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("retrieval: {k: 0}\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: 1 problem\(s\):\n  retrieval.k"):
        load_config(bad)


def test_a_config_that_is_not_utf8_or_gives_a_key_twice_is_one_clear_error(
        tmp_path: Path) -> None:
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes("name: Caf\xe9 bot\n".encode("latin-1"))
    twice = tmp_path / "twice.yaml"
    twice.write_text("data: {validation_share: 0.2}\nname: x\ndata: {seed: 7}\n")
    for path, expected in ((latin1, "not UTF-8 text (byte 0xe9 at position 9); save the file "
                                    "as UTF-8"),
                           (twice, "key 'data' is given twice")):
        with pytest.raises(ConfigError, match=re.escape(expected)):
            load_config(path)
        result = CliRunner().invoke(main, ["config", "check", str(path)])
        assert result.exit_code == 1 and expected in result.output
        assert "Traceback" not in result.output


def test_a_config_nested_too_deep_or_inside_itself_is_one_clear_error(tmp_path: Path) -> None:
    """An alias inside its own anchor (``&a [*a]``) never ends, and a nesting deeper than
    Python's stack is no config either: each is named, not a RecursionError traceback."""
    itself = tmp_path / "itself.yaml"
    itself.write_text("index: {paths: &p [docs, *p]}\n")
    deep = tmp_path / "deep.yaml"
    deep.write_text("name: " + "[" * 3000 + "]" * 3000 + "\n")
    for path, expected in ((itself, f"{itself}: not valid YAML: line 1, column 26: alias *p "
                                    "is inside the node its anchor &p names, so it never ends; "
                                    "write the values out"),
                           (deep, f"{deep}: not valid YAML: nested too deeply; a config is a "
                                  "few levels of sections")):
        with pytest.raises(ConfigError, match=re.escape(expected)):
            load_config(path)
        result = CliRunner().invoke(main, ["config", "check", str(path)])
        assert result.exit_code == 1 and result.output == f"error: {expected}\n"


def test_a_config_path_that_is_a_device_or_a_pipe_is_named_as_such() -> None:
    """``/dev/null`` or a shell's ``<(envsubst < bot.yaml)`` exist: "not found" would send the
    user looking for a typo."""
    result = CliRunner().invoke(main, ["config", "check", "/dev/null"])
    assert result.exit_code == 1 and result.output == (
        "error: /dev/null is not a file (a device or a pipe); save the config as a YAML file "
        "and give its path\n")


def test_a_data_dir_under_a_file_is_named_with_what_to_do(tmp_path: Path, monkeypatch) -> None:
    """data_dir under a file failed at the first command as `error: .../index/manifest.json:
    Not a directory`, naming neither the setting nor the file in the way."""
    monkeypatch.delenv("CHATBOT_DATA_DIR")
    (tmp_path / "notes").write_text("a file, not a folder\n")
    config = tmp_path / "bot.yaml"
    config.write_text("data_dir: notes/data\n")
    expected = (f"data_dir: {tmp_path / 'notes' / 'data'} can't be made: {tmp_path / 'notes'} "
                "is a file, not a folder; set data_dir to a folder")
    with pytest.raises(ConfigError, match=re.escape(expected)):
        load_config(config)
    checked = CliRunner().invoke(main, ["config", "check", "--offline", str(config)])
    assert checked.exit_code == 1 and expected in checked.output
    monkeypatch.setenv("CHATBOT_DATA_DIR", str(tmp_path / "notes"))
    listed = CliRunner().invoke(main, ["index", "list", "--config", str(config)])
    assert listed.exit_code == 1 and (f"$CHATBOT_DATA_DIR: {tmp_path / 'notes'} is a file, not a "
                                      "folder; set $CHATBOT_DATA_DIR to a folder") in listed.output


def test_a_yaml_merge_key_shares_settings_and_a_key_may_override_it(tmp_path: Path) -> None:
    """``<<: *anchor`` was refused as "could not determine a constructor for the tag": the
    duplicate-key check read the merge key as a value before YAML had merged it."""
    path = tmp_path / "bot.yaml"
    path.write_text("variants:\n  prompt: &base {template: rag, k: 3}\n"
                    "  wide:\n    <<: *base\n    k: 8\n")
    config = load_config(path)
    assert (config.variants["wide"].template, config.variants["wide"].k) == ("rag", 8)
    path.write_text("variants:\n  prompt: &base {k: 3}\n  wide:\n    <<: *base\n    k: 8\n"
                    "    k: 9\n")
    with pytest.raises(ConfigError, match="key 'k' is given twice"):
        load_config(path)


def test_a_tab_in_the_indentation_says_to_indent_with_spaces(tmp_path: Path) -> None:
    path = tmp_path / "bot.yaml"
    path.write_text("retrieval:\n\tk: 3\n")
    result = CliRunner().invoke(main, ["config", "check", str(path)])
    assert result.exit_code == 1
    assert result.output == (f"error: {path}: not valid YAML: line 2, column 1: while scanning "
                             "for the next token; found character '\\t' that cannot start any "
                             "token; YAML is indented with spaces, not tabs\n")


def test_files_are_looked_for_beside_the_problems_of_keys(tmp_path: Path) -> None:
    """A misspelt key hid a missing adapter until it was fixed and the check run again; a key
    already named (an unset variable) is not named again for its file."""
    path = tmp_path / "bot.yaml"
    path.write_text("generation:\n  temprature: 0\nmodels:\n  chat: ${NO_SUCH_DIR_XYZ}/m\n"
                    "variants:\n  prompt:\n    adapter: adapters/never-trained\n")
    result = CliRunner().invoke(main, ["config", "check", "--offline", str(path)])
    assert result.exit_code == 1
    unset, misspelt, adapter = result.stderr.splitlines()
    assert unset == (f"{path}: models.chat: environment variable $NO_SUCH_DIR_XYZ is not set "
                     "(set it, or write ${NO_SUCH_DIR_XYZ:-default} in the config)")
    assert misspelt == (f"{path}: generation.temprature: unknown key; did you mean "
                        "temperature? (else remove it)")
    assert adapter.startswith(f"{path}: variants.prompt.adapter: adapter folder ")
    assert adapter.endswith("adapters/never-trained does not exist (relative paths are under "
                            "the data directory); train it with `chatbot train`, or fix the path")
