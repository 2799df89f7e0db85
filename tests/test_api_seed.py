"""``seed``: a sampled answer asked again with the same seed is the same answer, whether the
model runs here (one answer at a time, or batched) or on a remote backend, which is sent it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from api_serving import ASK, Served, fixed_search, logged_turn
from test_remote import bot_engine, last_turns, remote, write_bot_config  # noqa: F401

SAMPLED = dict(temperature=1.0, max_tokens=8)


@pytest.fixture(scope="module", params=[8, 1], ids=["batched", "one-at-a-time"])
def served(request, tiny_model_dir: Path, tmp_path_factory) -> Iterator[Served]:
    """Our API over the tiny model, with ``models.max_batch`` from the test's parameter."""
    from app.build import build_engine
    from chatbot.config_file import load_config

    root = tmp_path_factory.mktemp("seeded-bot")
    config = {"data_dir": str(root / "data"),
              "models": {"chat": str(tiny_model_dir), "threads": 1, "embedder": "hash:64",
                         "max_batch": request.param},
              "generation": {"max_new_tokens": 8, "repetition_penalty": 2.0},
              "variants": {"plain": {"template": "plain", "retrieval": False}, "rag": {}},
              "default_variant": "plain"}
    (root / "bot.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CHATBOT_DATA_DIR", str(root / "data"))
        engine = build_engine(load_config(root / "bot.yaml"), search=fixed_search)
    server = Served(engine)
    yield server
    server.stop()


def test_a_seeded_sampled_answer_is_the_same_each_time_streamed_or_not(served) -> None:
    client = served.client()
    first = client.chat.completions.create(model="plain", messages=ASK, seed=7, **SAMPLED)
    again = client.chat.completions.create(model="plain", messages=ASK, seed=7, **SAMPLED)
    chunks = client.chat.completions.create(model="plain", messages=ASK, seed=7, stream=True,
                                            **SAMPLED)
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks)
    text = first.choices[0].message.content
    assert text and again.choices[0].message.content == streamed == text
    others = {client.chat.completions.create(model="plain", messages=ASK, seed=seed, **SAMPLED)
              .choices[0].message.content for seed in (8, 9, 10)}
    assert others - {text}  # the seed chose the tokens: other seeds, other answers
    settings = json.loads(logged_turn(served.engine, first.turn_id)["settings_json"])
    assert settings["seed"] == 7 and settings["temperature"] == 1.0


def test_a_seed_is_sent_on_to_a_remote_backend(remote, tmp_path, monkeypatch) -> None:
    url, remote_log = remote
    server = Served(bot_engine(write_bot_config(tmp_path, url), monkeypatch))
    try:
        client = server.client()
        first = client.chat.completions.create(model="prompt", messages=ASK, seed=7, **SAMPLED)
        assert last_turns(remote_log)[1].settings["seed"] == 7  # the remote's own log
        again = client.chat.completions.create(model="prompt", messages=ASK, seed=7, **SAMPLED)
        assert again.choices[0].message.content == first.choices[0].message.content
    finally:
        server.stop()


def test_system_fingerprint_names_what_a_seeded_answer_depends_on(served) -> None:
    """OpenAI's pairing: the same seed gives the same answer while the fingerprint stays."""
    client = served.client()
    whole = client.chat.completions.create(model="plain", messages=ASK, seed=7, **SAMPLED)
    chunks = list(client.chat.completions.create(model="plain", messages=ASK, seed=7,
                                                 stream=True, **SAMPLED))
    assert whole.system_fingerprint.startswith("fp_")
    assert {c.system_fingerprint for c in chunks} == {whole.system_fingerprint}
    other = client.chat.completions.create(model="rag", messages=ASK, seed=7, **SAMPLED)
    assert other.system_fingerprint.startswith("fp_")  # another template: other answers
    assert other.system_fingerprint != whole.system_fingerprint


def test_a_seeded_answer_leaves_the_servers_own_draws_unpredictable(served) -> None:
    """A stranger's seed must not set the generator every later unseeded answer draws from."""
    import torch

    before = torch.random.get_rng_state()
    served.client().chat.completions.create(model="plain", messages=ASK, seed=7, **SAMPLED)
    assert torch.equal(torch.random.get_rng_state(), before)
