"""The model cards of ``GET /v1/models``, as OpenAI clients read them."""

from __future__ import annotations

import time

from api_serving import client, engine, served  # noqa: F401 (fixtures)


def test_model_cards_say_when_the_model_was_made_and_say_it_alike_each_time(
        client, tiny_model_dir) -> None:
    """Clients sort and show models by ``created`` (Open WebUI, LibreChat); 0 reads as 1970."""
    first = {m.id: m.created for m in client.models.list().data}
    time.sleep(1.1)
    again = {m.id: m.created for m in client.models.list().data}
    assert first == again == {name: client.models.retrieve(name).created for name in first}
    made = int((tiny_model_dir / "config.json").stat().st_mtime)
    assert first["prompt"] == first["plain"] == made  # the model's files
    assert made <= first["broken"] <= time.time()  # no files: since it is served
