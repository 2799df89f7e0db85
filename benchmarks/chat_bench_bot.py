"""The embedded default bot as the chat benchmarks use it (not a benchmark itself).

Every ``bench_chat_*.py`` answers the same question over the same four passages of the user
guide (``docs/indexing.md``), so their figures compare; ``bench_chat_latency.py`` uses the real
index instead. Logs go to a temporary data dir, never to the repository's.
"""

from __future__ import annotations

import os
import re
import socket
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QUESTION = "How do I index my documents, and what happens when I sync again?"


def guide_passages(count: int = 4, chars: int = 700) -> list:
    """The first ``count`` paragraphs-sized pieces of docs/indexing.md as search hits."""
    from index.types import Chunk, Hit

    text = (ROOT / "docs" / "indexing.md").read_text(encoding="utf-8")
    sections = [s.strip() for s in re.split(r"\n(?=## )", text) if s.strip()]
    return [Hit(Chunk(f"guide-{i}", "docs/indexing.md", section[:chars],
                      section.splitlines()[0].lstrip("# "), "bench"), 0.8 - i / 100, i + 1)
            for i, section in enumerate(sections[:count])]


def embedded_config(threads: int | None, data_dir: Path | None = None):
    """configs/default.yaml with its data dir in a temporary folder."""
    from chatbot.config_file import load_config

    os.environ["CHATBOT_DATA_DIR"] = str(data_dir or tempfile.mkdtemp(prefix="bench-chat-"))
    config = load_config(ROOT / "configs" / "default.yaml")
    config.models.threads = threads
    return config


def embedded_engine(threads: int | None, max_new_tokens: int, search=None):
    """An engine on the embedded SmolLM2, answering over the fixed guide passages."""
    from dataclasses import replace

    from app.build import build_engine

    passages = guide_passages()
    engine = build_engine(embedded_config(threads),
                          search=search or (lambda query, k: passages[:k]))
    engine.settings = replace(engine.settings, max_new_tokens=max_new_tokens)
    engine.answer("warm-up", "Hello", None).result()  # load the model outside the timings
    return engine


@contextmanager
def served_api(engine) -> Iterator[str]:
    """The API router on uvicorn in a thread; yields the base URL for ``openai.OpenAI``."""
    import uvicorn
    from fastapi import FastAPI

    from app.api import create_api_router

    app = FastAPI()
    app.include_router(create_api_router(engine))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(10)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ratio(value: float, baseline: float) -> str:
    return f"{value / baseline:.3f}" if baseline else "n/a"
