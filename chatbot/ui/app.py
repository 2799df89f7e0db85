"""The web app: the Chat and Documents tabs around an engine passed in, built apart from serving.

``build_app`` returns a ``gr.Blocks`` that tests drive without a server; ``mount_ui`` puts it
on a FastAPI app (``chatbot serve`` does both).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import gradio as gr
from fastapi import FastAPI

from chatbot.engine import Engine
from chatbot.ui.chat import build_chat_tab
from chatbot.ui.documents import Documents, build_documents_tab
from chatbot.ui.render import CSS, HEAD

Auth = list[tuple[str, str]]


def build_app(engine: Engine, *, documents: Documents | None = None,
              title: str = "chatbot-builder", show_variant_names: bool = True,
              auth: Auth | None = None,
              assign_variant: Callable[[str], str] | None = None,
              tabs: Sequence[tuple[str, Callable[[], object]]] = ()) -> gr.Blocks:
    """The whole UI. ``assign_variant(session_id)`` (A/B) replaces the variant selector;
    ``auth`` (user, password) pairs are asked for by ``mount_ui``; each of ``tabs`` is a
    (label, build function) called inside its own tab after Chat and Documents; what it returns
    may list ``on_page_load`` (function, outputs) pairs to run when a page opens."""
    with gr.Blocks(title=title, analytics_enabled=False) as app:
        gr.Markdown(f"## {title}")
        with gr.Tabs():
            with gr.Tab("Chat", id="chat"):
                app.chat_actions = build_chat_tab(engine, assign_variant, show_variant_names)
            _on_page_load(app, app.chat_actions)
            if documents is not None:
                with gr.Tab("Documents", id="documents"):
                    app.document_actions = build_documents_tab(documents)
                app.load(app.document_actions.table, None, app.document_actions.listing)
            app.tab_actions = {}
            for label, build in tabs:
                with gr.Tab(label, id=label.lower()):
                    app.tab_actions[label] = build()
                _on_page_load(app, app.tab_actions[label])
    app.login_pairs = auth
    return app


def _on_page_load(app: gr.Blocks, actions: object) -> None:
    for function, outputs in getattr(actions, "on_page_load", ()):
        app.load(function, None, outputs)


def mount_ui(server: FastAPI, app: gr.Blocks, path: str = "/") -> FastAPI:
    """Serve ``app`` at ``path`` of ``server`` with its styles, script and optional login."""
    return gr.mount_gradio_app(server, app, path, auth=getattr(app, "login_pairs", None) or None,
                               css=CSS, head=HEAD, footer_links=[], run_history=False,
                               show_error=True, ssr_mode=False)
