"""The Gradio web UI (gradio is imported only in this package): ``build_app`` and ``mount_ui``.

    chatbot serve
"""

from app.ui.app import build_app, mount_ui

__all__ = ["build_app", "mount_ui"]
