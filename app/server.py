"""One server for the web UI (at ``/``) and the OpenAI-compatible API (at ``/v1``).

    chatbot serve [--host 127.0.0.1] [--port 7860]
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from app.api_errors import UnexpectedApiFailures
from app.api_request_id import RequestIds
from app.auth import Credentials, FailedAttempts, LoginThrottle, RequireCredential
from app.body_limit import WebUiBodyLimit
from app.content_policy import OwnImagesOnly
from app.cross_site import CrossSiteRefusal, LocalNamesOnly
from chatbot.config import BotConfig
from chatbot.engine import Engine


def create_server_app(engine: Engine, config: BotConfig, documents=None,
                      config_path: Path | None = None) -> FastAPI:
    """The FastAPI app: ``/v1`` API routes first, then the web UI mounted at ``/``, all behind
    the one rule of ``app.auth`` (the login and API key the config and environment set).

    ``config_path`` (the YAML ``config`` was read from) enables the Training tab's runs.
    """
    from app.api import create_api_router
    from app.api_adapters import create_adapters_router
    from app.api_corrections import create_corrections_router
    from app.api_fallback import add_api_fallback
    from app.api_body import RequestLimits
    from app.api_tokenize import create_tokenize_router
    from app.ui import build_app, mount_ui

    @asynccontextmanager
    async def stop_answers_on_shutdown(_: FastAPI) -> AsyncIterator[None]:
        yield
        await asyncio.to_thread(engine.stop_all)  # each answer logged, then all in one file
        if engine.log is not None:
            engine.log.checkpoint()

    server = FastAPI(title=config.name, docs_url=None, redoc_url=None,
                     lifespan=stop_answers_on_shutdown)
    credentials = Credentials.from_config(config)
    assign, show_names, tabs = ab_parts(engine, config)
    # the API first: the UI mounted at "/" takes every other path
    limits = RequestLimits(config.server.max_request_messages, config.server.max_request_chars)
    server.include_router(create_api_router(engine, assign, limits,
                                            config.server.max_waiting_answers))
    server.include_router(create_adapters_router(engine))  # off unless allowed
    server.include_router(create_tokenize_router(engine, limits))  # vLLM's /tokenize
    server.include_router(create_corrections_router(engine.log))
    add_api_fallback(server)  # after every /v1 route, before the UI takes the rest
    tabs = training_parts(engine, config, config_path) + tabs
    app = build_app(engine, documents=documents, title=config.name, assign_variant=assign,
                    show_variant_names=show_names, tabs=tabs,
                    answers_at_once=config.models.max_batch)
    caller = mount_ui(server, app, credentials, config.data_path, config.index.max_file_mb,
                      config.index.max_upload_mb)
    server.add_middleware(UnexpectedApiFailures)  # innermost: it sees what a route raised
    attempts = FailedAttempts()  # wrong keys and failed logins, counted together
    server.add_middleware(RequireCredential, credentials=credentials, caller=caller,
                          attempts=attempts)
    if credentials.required:
        server.add_middleware(LoginThrottle, attempts=attempts)
    server.add_middleware(WebUiBodyLimit, max_bytes=limits.body_bytes,
                          max_upload_mb=config.index.max_upload_mb,
                          min_free_disk_mb=config.index.min_free_disk_mb,
                          data_dir=config.data_path)
    server.add_middleware(OwnImagesOnly)
    server.add_middleware(CrossSiteRefusal)  # refused before anything is read
    if not credentials.required:  # a login's cookie is not sent to another site's name
        server.add_middleware(LocalNamesOnly, allowed=config.server.allowed_hosts)
    server.add_middleware(RequestIds)  # outermost: every API response carries its id
    return server


def ab_parts(engine: Engine, config: BotConfig) -> tuple:
    """(assign_variant or None, show variant names, extra tabs) from the ``ab`` section.

    With ``ab.enabled`` each web session gets a sticky variant; with two or more variants in
    the split (``ab.weights``, else the config's variants: an adapter registered since waits
    to be named) the Arena and Dashboard tabs compare them. Votes live in the conversation
    log, so with logging off there is no A/B.
    """
    from chatbot.ab import AbStore, arena_pairs
    from chatbot.paths import DataPaths

    split = config.ab_split
    arms = list(split)  # weight 0 too: its past sessions are reported, it can be compared
    if not config.logging.enabled or (not config.ab.enabled and len(arms) < 2):
        return None, True, []
    ab = config.ab
    store = AbStore(DataPaths(config.data_path).logs)
    assign = (lambda session: store.sticky_variant(session, split)) if ab.enabled else None
    tabs = []
    if ab.arena_pairs or len(arms) >= 2:
        from app.ui.arena import build_arena_tab
        from app.ui.dashboard import build_dashboard_tab

        pairs, batch = arena_pairs(arms, ab.arena_pairs), config.models.max_batch
        tabs = [("Arena", lambda: build_arena_tab(engine, store, pairs, batch)),
                ("Dashboard", lambda: build_dashboard_tab(store, arms, ab.min_effect, ab.alpha,
                                                          ab.power, ab.bootstrap, ab.enabled))]
    return assign, ab.show_variant_names if ab.enabled else True, tabs


def training_parts(engine: Engine, config: BotConfig, config_path: Path | None) -> list:
    """The Training tab, when there is a conversation log to build datasets from and a config
    file for ``chatbot train`` to read."""
    if not config.logging.enabled or config_path is None:
        return []
    from app.ui.training import build_training_tab

    return [("Training", lambda: build_training_tab(config, Path(config_path).resolve(), engine))]
