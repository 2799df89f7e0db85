"""A model whose places are all held by long answers (one at a time, ``models.max_batch: 1``,
or a full batch): a request behind them fails as busy once ``models.queue_timeout_s`` is up,
instead of waiting without end. The real API on uvicorn, the real ``openai`` client, a real
(tiny) model."""

from __future__ import annotations

import contextlib
from pathlib import Path

import openai
import pytest
import yaml

from tests.api_serving import ASK, Served
from tests.test_cancellation import talkative_model_dir  # noqa: F401 (a fixture)


def busy_engine(root: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch,
                max_batch: int = 1):
    from app.build import build_engine
    from chatbot.config_file import load_config

    config = {"data_dir": str(root / "data"),
              "models": {"chat": str(model_dir), "threads": 1, "embedder": "hash:64",
                         "max_batch": max_batch, "queue_timeout_s": 0.01},
              "variants": {"plain": {"template": "plain", "retrieval": False}},
              "default_variant": "plain"}
    (root / "bot.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.setenv("CHATBOT_DATA_DIR", str(root / "data"))
    return build_engine(load_config(root / "bot.yaml"))


@pytest.mark.parametrize("max_batch, message", [
    (1, "the model had no free turn for 0.01 s: it answers one question at a time "
        "(models.max_batch 1) and others were under way; ask again later, or raise "
        "models.max_batch or models.queue_timeout_s"),
    (2, "the model had no free place for 0.01 s: all 2 of its places (models.max_batch) held "
        "answers under way; ask again later, or raise models.max_batch or "
        "models.queue_timeout_s")], ids=["one-at-a-time", "full-batch"])
def test_a_request_waiting_for_the_model_fails_once_its_wait_is_up(
        tmp_path, monkeypatch, talkative_model_dir, max_batch, message) -> None:  # noqa: F811
    """Before, a request behind them waited without a time limit."""
    from chatbot.generate import GenerationSettings

    engine = busy_engine(tmp_path, talkative_model_dir, monkeypatch, max_batch=max_batch)
    served = Served(engine)
    endless = GenerationSettings(max_new_tokens=3000)
    try:
        with contextlib.ExitStack() as held:
            pieces = [iter(held.enter_context(engine.answer(f"s-{place}", "Talk", "plain",
                                                            endless)))
                      for place in range(max_batch)]
            for answer in pieces:  # kept: an iterator let go would end its answer
                next(answer)  # it generates: the place is taken
            with pytest.raises(openai.InternalServerError) as refused:
                served.client().chat.completions.create(model="plain", messages=ASK)
    finally:
        served.stop()
    error = refused.value
    assert error.status_code == 503 and error.body["code"] == "backend_busy"
    assert error.response.headers["retry-after"] == "1"
    assert error.body["message"] == message
