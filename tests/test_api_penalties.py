"""``presence_penalty`` and ``frequency_penalty``, OpenAI's: honoured by the model run here
(one answer at a time or batched, alike) and sent on to a remote backend."""

from __future__ import annotations

import json
from pathlib import Path

import openai
import pytest
import yaml

from api_serving import ASK, Served, fixed_search, logged_turn
from test_remote import bot_engine, last_turns, remote, write_bot_config  # noqa: F401

REPEATS = dict(max_tokens=24)  # greedy, no repetition penalty: the tiny model repeats itself
PENALTIES = dict(presence_penalty=1.5, frequency_penalty=2.0)


def test_the_penalties_follow_openais_formula() -> None:
    """A logit falls by frequency_penalty for each time the answer used its token, and by
    presence_penalty once for having used it."""
    import torch

    from chatbot.generate import GenerationSettings
    from chatbot.penalties import penalized

    settings = GenerationSettings(presence_penalty=0.5, frequency_penalty=1.0)
    used = torch.tensor([1, 1, 3])
    assert penalized(torch.zeros(5), used, settings).tolist() == [0, -2.5, 0, -1.5, 0]


def served_with_batch(max_batch: int, root: Path, tiny_model_dir: Path) -> Served:
    from app.build import build_engine
    from chatbot.config_file import load_config

    config = {"data_dir": str(root / "data"),
              "models": {"chat": str(tiny_model_dir), "threads": 1, "embedder": "hash:64",
                         "max_batch": max_batch},
              "generation": {"max_new_tokens": 8, "repetition_penalty": 1.0},
              "variants": {"plain": {"template": "plain", "retrieval": False}},
              "default_variant": "plain"}
    root.mkdir(exist_ok=True)
    (root / "bot.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CHATBOT_DATA_DIR", str(root / "data"))
        return Served(build_engine(load_config(root / "bot.yaml"), search=fixed_search))


def answers(served: Served, **asked) -> tuple[str, dict]:
    """The answer's text and the settings its turn was logged with."""
    reply = served.client().chat.completions.create(model="plain", messages=ASK, **asked)
    return reply.choices[0].message.content, logged_turn(served.engine, reply.turn_id)


def test_penalties_change_the_answer_alike_batched_or_one_at_a_time(tiny_model_dir,
                                                                    tmp_path) -> None:
    """They were ignored: a chat app's setting against repeated words changed nothing."""
    texts = {}
    for max_batch in (8, 1):
        served = served_with_batch(max_batch, tmp_path / str(max_batch), tiny_model_dir)
        try:
            plain, _ = answers(served, **REPEATS)
            penalized, turn = answers(served, **REPEATS, **PENALTIES)
        finally:
            served.stop()
        texts[max_batch] = (plain, penalized)
        settings = json.loads(turn["settings_json"])
        assert settings["presence_penalty"] == 1.5 and settings["frequency_penalty"] == 2.0
    assert texts[8] == texts[1]  # the batched sampler and generate() apply them alike
    plain, penalized = texts[8]
    assert penalized != plain


def test_penalties_are_sent_on_to_a_remote_backend(remote, tmp_path, monkeypatch) -> None:
    url, remote_log = remote
    server = Served(bot_engine(write_bot_config(tmp_path, url), monkeypatch))
    try:
        server.client().chat.completions.create(model="prompt", messages=ASK, **PENALTIES)
    finally:
        server.stop()
    settings = last_turns(remote_log)[1].settings  # the remote's own log
    assert settings["presence_penalty"] == 1.5 and settings["frequency_penalty"] == 2.0


@pytest.mark.parametrize("field", ["presence_penalty", "frequency_penalty"])
def test_a_penalty_outside_openais_range_is_refused(tiny_model_dir, tmp_path, field) -> None:
    served = served_with_batch(1, tmp_path, tiny_model_dir)
    try:
        with pytest.raises(openai.BadRequestError) as refused:
            served.client().chat.completions.create(model="plain", messages=ASK, **{field: 2.5})
    finally:
        served.stop()
    assert refused.value.body["param"] == field
    assert refused.value.body["message"] == f"{field}: Input should be less than or equal to 2"
