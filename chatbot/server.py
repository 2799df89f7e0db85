"""One server for the web UI (at ``/``) and the OpenAI-compatible API (at ``/v1``).

    chatbot serve [--host 127.0.0.1] [--port 7860]
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI

from chatbot.config import BotConfig
from chatbot.engine import Engine
from chatbot.errors import ConfigError


def read_auth(config: BotConfig) -> list[tuple[str, str]] | None:
    """Login pairs from ``CHATBOT_USER``/``CHATBOT_PASSWORD`` and ``server.auth_file``;
    ``None`` (no login) when neither is set."""
    pairs = []
    user, password = os.environ.get("CHATBOT_USER"), os.environ.get("CHATBOT_PASSWORD")
    if bool(user) != bool(password):
        raise ConfigError("set both CHATBOT_USER and CHATBOT_PASSWORD for the web login, "
                          "or neither")
    if user:
        pairs.append((user, password))
    if config.server.auth_file:
        pairs += read_auth_file(config.resolve(config.server.auth_file))
    return pairs or None


def read_auth_file(path: Path) -> list[tuple[str, str]]:
    if not path.is_file():
        raise ConfigError(f"server.auth_file {path} not found; create it with user:password "
                          "lines or remove the key")
    pairs = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, password = line.partition(":")
        if not sep or not user or not password:
            raise ConfigError(f"{path}:{number}: expected user:password")
        pairs.append((user, password))
    if not pairs:
        raise ConfigError(f"{path}: no user:password lines; add one or remove server.auth_file")
    return pairs


def create_server_app(engine: Engine, config: BotConfig, documents=None,
                      config_path: Path | None = None) -> FastAPI:
    """The FastAPI app: ``/v1`` API routes first, then the web UI mounted at ``/``.

    ``config_path`` (the YAML ``config`` was read from) enables the Training tab's runs.
    """
    from chatbot.api import create_api_router
    from chatbot.ui import build_app, mount_ui

    server = FastAPI(title=config.name, docs_url=None, redoc_url=None)
    api_key = os.environ.get(config.server.api_key_env) or None
    assign, show_names, tabs = ab_parts(engine, config)
    # the API first: the UI mounted at "/" takes every other path
    server.include_router(create_api_router(engine, api_key, assign))
    tabs = training_parts(engine, config, config_path) + tabs
    app = build_app(engine, documents=documents, title=config.name, auth=read_auth(config),
                    assign_variant=assign, show_variant_names=show_names, tabs=tabs)
    return mount_ui(server, app, "/")


def ab_parts(engine: Engine, config: BotConfig) -> tuple:
    """(assign_variant or None, show variant names, extra tabs) from the ``ab`` section.

    With ``ab.enabled`` each web session gets a sticky variant; with two or more variants
    the Arena and Dashboard tabs are there to compare them. Votes live in the conversation
    log, so with logging off there is no A/B.
    """
    from chatbot.ab import AbStore, session_assigner

    variants = list(engine.variants)
    if not config.logging.enabled or (not config.ab.enabled and len(variants) < 2):
        return None, True, []
    ab = config.ab
    store = AbStore(config.data_path / "logs.sqlite")
    assign = session_assigner(store, ab.weights, variants) if ab.enabled else None
    tabs = []
    if len(variants) >= 2:
        from chatbot.ui.arena import build_arena_tab
        from chatbot.ui.dashboard import build_dashboard_tab

        tabs = [("Arena", lambda: build_arena_tab(engine, store, ab.arena_pairs)),
                ("Dashboard", lambda: build_dashboard_tab(store, variants, ab.min_effect,
                                                          ab.alpha, ab.power, ab.bootstrap))]
    return assign, ab.show_variant_names if ab.enabled else True, tabs


def training_parts(engine: Engine, config: BotConfig, config_path: Path | None) -> list:
    """The Training tab, when there is a conversation log to build datasets from and a config
    file for ``chatbot train`` to read."""
    if not config.logging.enabled or config_path is None:
        return []
    from chatbot.ui.training import build_training_tab

    return [("Training", lambda: build_training_tab(config, Path(config_path).resolve(), engine))]
