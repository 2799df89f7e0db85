"""Calls to the Gradio API with values the tab's inputs can't take: refused in one line.

A stranger's ``curl`` or ``gradio_client`` call may send too few or too many values, or a value
of the wrong kind (text for a number, a mode no radio offers). Gradio answered those with
Python's words and printed a traceback for each in the server's output; here the caller is told
which value is wrong and what it takes, and the server's log gets that one line.
"""

from __future__ import annotations

import logging
from typing import Any

import gradio as gr

logger = logging.getLogger(__name__)

UPLOADED_FILES = ("takes only files uploaded to this server through /gradio_api/upload "
                  "(with gradio_client: handle_file(path))")


def refuse_values_it_cannot_take(app: gr.Blocks) -> None:
    """Check each call's values as Gradio reads them (``Blocks.preprocess_data``, which every
    call route and the page go through) before any event function runs."""
    read = app.preprocess_data

    async def checked(block_fn, inputs: list, *args, **kwargs) -> Any:
        api = f"/{block_fn.api_name}" if block_fn.api_name else "this event"
        names = [_input_name(block_fn, i) for i in range(len(block_fn.inputs))]
        if len(inputs) != len(block_fn.inputs):
            _refuse(f"{api} takes {len(names)} values ({', '.join(names)}), not "
                         f"{len(inputs)}")
        try:
            return await read(block_fn, inputs, *args, **kwargs)
        except Exception as exc:
            told, why = _what_was_wrong(block_fn.inputs, names, inputs, exc)
            _refuse(f"{api}{told}", why)

    app.preprocess_data = checked


def _refuse(told: str, why: str = "") -> None:
    logger.warning("refused a Gradio API call: %s%s", told, f" ({why})" if why else "")
    raise gr.Error(told, print_exception=False)


def _input_name(block_fn, index: int) -> str:
    """The name the API page and gradio_client give the value: the function's parameter."""
    names = getattr(block_fn, "input_parameter_names", [])
    name = names[index] if index < len(names) else None
    return name or getattr(block_fn.inputs[index], "label", None) or f"value {index + 1}"


def _what_was_wrong(blocks: list, names: list[str], values: list,
                    exc: Exception) -> tuple[str, str]:
    """(what the caller is told after the route's name, what only the log adds). Gradio's
    reason for refusing a file is left to the log: it may name the server's folders."""
    for block, name, value in zip(blocks, names, values):
        if getattr(block, "data_model", None) is not None:
            continue  # files and tables: read with the upload folder's rules, below
        try:
            block.preprocess(value)
        except Exception:
            shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
            return f": {name} cannot be {shown}: it takes {_what_it_takes(block)}", ""
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if any(isinstance(block, gr.File) for block in blocks):
        return f" {UPLOADED_FILES}", first_line
    return f": {first_line}", ""


def _what_it_takes(block) -> str:
    if choices := getattr(block, "choices", None):
        return "one of " + ", ".join(repr(value) for _, value in choices)
    if isinstance(block, (gr.Number, gr.Slider)):
        return "a number"
    if isinstance(block, gr.Checkbox):
        return "true or false"
    if isinstance(block, gr.Textbox):
        return "text"
    return f"a {block.get_block_name()} value"
