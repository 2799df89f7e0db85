"""Imported conversations rendered the way serving renders a question.

Serving sends ``build_messages(template, question, hits, history)``: the template's system
prompt, the history, and the user turn in the template's wording. An imported conversation that
brings no system message of its own is rendered the same way (with no retrieved passages), so
the fine-tuned model is trained on the prompt shape it will be served with. A conversation with
its own system message (for example a re-imported export) is kept as it is.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

from training.transcripts import Conversation


def render_imports(conversations: Sequence[Conversation], template,
                   bot_name: str = "chatbot-builder") -> list[Conversation]:
    """Each conversation without a system message, re-rendered with ``template``."""
    return [render_one(c, template, bot_name) for c in conversations]


def render_one(conversation: Conversation, template, bot_name: str) -> Conversation:
    from chatbot.prompts import build_messages

    messages = conversation.messages
    if any(m.role == "system" for m in messages):
        return conversation
    last_user = max(i for i, m in enumerate(messages) if m.role == "user")
    history = list(messages[:last_user])
    rendered = build_messages(template, messages[last_user].content, [], history=history,
                              bot_name=bot_name)
    final = tuple(rendered) + tuple(messages[last_user + 1:])
    meta = {**conversation.meta, "rendered_with": template.name}
    return replace(conversation, messages=final, dialogue=messages, meta=meta)
