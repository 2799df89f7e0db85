"""The API on a real uvicorn server with a tiny model, for the API's test files: the bot,
the server and the real ``openai`` client (module fixtures), and what they ask."""

from __future__ import annotations

import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
import yaml

from index.types import Chunk, Hit

PASSAGE = "Run `chatbot index sync docs/` to index your documents."
ASK = [{"role": "user", "content": "How do I index my documents?"}]
JSON = {"Content-Type": "application/json"}


def fixed_search(query: str, k: int) -> list[Hit]:
    chunk = Chunk("c1", "docs/indexing.md", PASSAGE, "Indexing > Sync", "hash")
    return [Hit(chunk, 0.87, 1)][:k]


class Served:
    """A FastAPI app with the API router, served by uvicorn on a free port in a thread (the
    credentials in front of it are tested with the whole server in test_server.py)."""

    def __init__(self, engine, assign_variant=None) -> None:
        import uvicorn
        from fastapi import FastAPI

        from app.api import create_api_router

        self.engine = engine
        app = FastAPI()
        app.include_router(create_api_router(engine, assign_variant))
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port,
                                                    log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        self.base_url = f"http://127.0.0.1:{self.port}/v1"

    def client(self, api_key: str = "unused", **kwargs) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.base_url, api_key=api_key, max_retries=0,
                             timeout=30, **kwargs)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module")
def engine(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    from app.build import build_engine
    from chatbot.config_file import load_config

    root = tmp_path_factory.mktemp("api-bot")
    # one torch thread: on a busy 2-core machine two threads wait on each other (20x slower)
    # the hash embedder: attribution is lexical here (tests/test_attribution.py uses MiniLM)
    config = {"data_dir": str(root / "data"),
              "models": {"chat": str(tiny_model_dir), "threads": 1, "embedder": "hash:64"},
              "generation": {"max_new_tokens": 8, "max_message_chars": 2000,
                             "repetition_penalty": 2.0},  # words, not newlines, from noise
              "variants": {"prompt": {}, "plain": {"template": "plain", "retrieval": False},
                           "broken": {"adapter": "adapters/missing"}}}
    (root / "bot.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CHATBOT_DATA_DIR", str(root / "data"))
        return build_engine(load_config(root / "bot.yaml"), search=fixed_search)


@pytest.fixture(scope="module")
def served(engine) -> Iterator[Served]:
    server = Served(engine)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(served) -> openai.OpenAI:
    return served.client()


def logged_turn(engine, turn_id: int) -> sqlite3.Row:
    db = sqlite3.connect(engine.log.path)
    db.row_factory = sqlite3.Row
    row = db.execute("SELECT t.*, s.client FROM turns t JOIN sessions s "
                     "ON s.id = t.session_id WHERE t.id = ?", (turn_id,)).fetchone()
    db.close()
    return row
