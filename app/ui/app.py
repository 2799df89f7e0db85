"""The web app: the Chat, Documents and Review tabs around an engine passed in, built apart from
serving.

``build_app`` returns a ``gr.Blocks`` that tests drive without a server; ``mount_ui`` puts it
on a FastAPI app behind the server's credentials (``chatbot serve`` does both).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import gradio as gr
from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.requests import HTTPConnection
from starlette.routing import Mount

from app.auth import Caller, Credentials
from chatbot.attribution import AttributionSettings
from chatbot.engine import Engine
from app.ui.api_calls import answer_unknown_routes, refuse_values_it_cannot_take
from app.ui.chat import build_chat_tab
from app.ui.documents import Documents, build_documents_tab
from app.ui.render import CSS, HEAD, upload_limits
from app.ui.review import build_review_tab


def build_app(engine: Engine, *, documents: Documents | None = None,
              title: str = "chatbot-builder", show_variant_names: bool = True,
              assign_variant: Callable[[str], str] | None = None,
              tabs: Sequence[tuple[str, Callable[[], object]]] = (),
              answers_at_once: int = 1) -> gr.Blocks:
    """The whole UI. ``assign_variant(session_id)`` (A/B) replaces the variant selector;
    ``answers_at_once``: chat answers given together (``models.max_batch`` on a server);
    each of ``tabs`` is a (label, build function) called inside its own tab after Chat and
    Documents; what it returns may list ``on_page_load`` (function, outputs) pairs to run when a
    page opens, and ``on_tab_open`` pairs to run each time its tab is opened."""
    # uploads wait in Gradio's cache until indexed or imported: cleared hourly of any a day
    # old, and at shutdown, so uploads can't pile up on the server's disk
    with gr.Blocks(title=title, analytics_enabled=False, delete_cache=(3600, 86400)) as app:
        gr.Markdown(f"## {title}")
        with gr.Tabs():
            with gr.Tab("Chat", id="chat"):
                app.chat_actions = build_chat_tab(engine, assign_variant, show_variant_names,
                                                  answers_at_once)
            _on_page_load(app, app.chat_actions)
            if documents is not None:
                with gr.Tab("Documents", id="documents") as documents_tab:
                    app.document_actions = build_documents_tab(documents)
                for opened in (app.load, documents_tab.select):
                    opened(app.document_actions.table, None, app.document_actions.listing)
            if engine.log is not None:
                with gr.Tab("Review", id="review") as review_tab:
                    app.review_actions = build_review_tab(review_tab, engine.log,
                                                          _min_support(engine))
                _on_page_load(app, app.review_actions)
            app.tab_actions = {}
            for label, build in tabs:
                with gr.Tab(label, id=label.lower()) as tab:
                    app.tab_actions[label] = build()
                _on_page_load(app, app.tab_actions[label])
                for function, outputs in getattr(app.tab_actions[label], "on_tab_open", ()):
                    tab.select(function, None, outputs)
    refuse_values_it_cannot_take(app)
    return app


def _min_support(engine: Engine) -> float:
    """The support score under which an answer is listed for review: attribution's own."""
    attributor = engine.attributor
    return (attributor.settings if attributor else AttributionSettings()).min_support


def _on_page_load(app: gr.Blocks, actions: object) -> None:
    """Run ``actions.on_page_load`` when the page opens: (function, outputs) pairs, each with
    the event's options (its queue) where a third item gives them."""
    for function, outputs, *options in getattr(actions, "on_page_load", ()):
        app.load(function, None, outputs, **(options[0] if options else {}))


def mount_ui(server: FastAPI, app: gr.Blocks, credentials: Credentials,
             data_dir: Path, max_file_mb: float, max_upload_mb: float) -> Caller:
    """Serve ``app`` at ``/`` of ``server`` with its styles and script; returns who is calling.

    With ``credentials``, Gradio's login page asks for them, and its routes take the same
    callers as the rest of the server: a logged-in user or the right bearer key. A request's
    file may only be one uploaded through ``/gradio_api/upload``, and nothing under
    ``data_dir`` (the conversation log, the index) is ever handed out. An upload larger than
    ``max_file_mb`` (what indexing takes, ``index.max_file_mb``) is refused as it arrives, so a
    stranger can't fill the server's disk with one file; the page checks chosen files against
    it and ``max_upload_mb`` (``app.body_limit``) before sending them. The page shows the
    messages the tabs give (``gr.Error``); an unexpected exception's text, which may name the
    server's files, is left to the server's output with its traceback.
    """
    gr.mount_gradio_app(server, app, "/", auth=credentials.login_ok if credentials.required
                        else None, allowed_paths=[], blocked_paths=[str(data_dir.resolve())],
                        css=CSS, head=upload_limits(max_file_mb, max_upload_mb) + HEAD,
                        footer_links=[], run_history=False, show_error=False, ssr_mode=False,
                        max_file_size=int(max_file_mb * 2**20))
    # Gradio refuses a request's file path outside its upload folder only in a launched app,
    # and mounting never marks the app launched.
    app.has_launched = True
    gradio_app = next(route.app for route in server.routes
                      if isinstance(route, Mount) and getattr(route.app, "blocks", None) is app)
    answer_unknown_routes(gradio_app)
    logged_in = _gradio_user(gradio_app)

    async def caller(connection: HTTPConnection) -> str | None:
        return credentials.caller(connection, await logged_in(connection))

    gradio_app.dependency_overrides[logged_in] = caller
    # Each open page holds a heartbeat stream that never ends by itself; a server stopping
    # ends them (app/stopping_server.py), as Gradio's own launch does.
    server.state.end_page_heartbeats = gradio_app.stop_event.set
    return caller


def _gradio_user(gradio_app: FastAPI) -> Callable:
    """Gradio's "who is logged in" dependency (its login cookie), which all of its routes use;
    its page route ``/`` asks for it as ``user``."""
    page = next(route for route in gradio_app.routes
                if isinstance(route, APIRoute) and route.path == "/")
    return next(dependency.call for dependency in page.dependant.dependencies
                if dependency.name == "user")
