"""A backend's API key as the environment holds it: a line break around it (a secret made from
a file, an env file with CRLF endings) is not part of it; a character an HTTP header can't
carry (a typographic quote pasted with it) is named, and the key never is.

The remote is a second `chatbot serve` on the tiny model that requires the key.

    .venv/bin/python -m pytest tests/test_remote_key.py -q -n 0
"""

from __future__ import annotations

import pytest

from chatbot.errors import ConfigError
from tests.test_config_check_remote import check
from tests.test_remote import REMOTE_KEY, bot_engine, remote, write_bot_config  # noqa: F401


@pytest.mark.parametrize("around", ["\n", "\r\n", " "])
def test_a_key_with_white_space_after_it_is_the_key_without_it(remote, tmp_path, monkeypatch,
                                                               around) -> None:  # noqa: F811
    """It was sent as is: httpx refused the header, told as "unreachable after 3 retries
    (Illegal header value b'Bearer ...')", the key itself in the message."""
    config = write_bot_config(tmp_path, remote[0])
    engine = bot_engine(config, monkeypatch, key=REMOTE_KEY + around)
    assert engine.answer("s1", "hello", "prompt").result().text != ""
    result = check(config)
    assert (result.exit_code, result.output) == (0, f"{config}: ok\n")


def test_a_key_with_a_character_no_header_carries_is_named_without_the_key(
        remote, tmp_path, monkeypatch) -> None:  # noqa: F811
    """A UnicodeEncodeError out of the HTTP client, or the key in the error, before."""
    config = write_bot_config(tmp_path, remote[0])
    engine = bot_engine(config, monkeypatch, key=f"\u201c{REMOTE_KEY}\u201d")
    said = ("$TEST_REMOTE_KEY (backends.remote.api_key_env) holds a character an HTTP header "
            "can't carry (U+201C at position 1); set it to the key alone")
    with pytest.raises(ConfigError) as caught:
        engine.answer("s1", "hello", "prompt").result()
    assert str(caught.value) == said and REMOTE_KEY not in str(caught.value)
    result = check(config)
    assert (result.exit_code, result.output) == (1, f"{config}: {said}\n")
