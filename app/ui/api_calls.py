"""Calls to the Gradio API with values the tab's inputs can't take: refused in one line.

A stranger's ``curl`` or ``gradio_client`` call may send too few or too many values, or a value
of the wrong kind (text for a number, a mode no radio offers), or name a route that does not
exist. Gradio answered those with Python's words (or a 500) and printed a traceback for each in
the server's output; here the caller is told what is wrong, and the server's log gets at most
one line.
"""

from __future__ import annotations

import logging
from typing import Any

import gradio as gr
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from gradio.route_utils import FnIndexInferError

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


def answer_unknown_routes(gradio_app: FastAPI) -> None:
    """A 404 for a call naming a route (``/gradio_api/call/NAME``) or an event number
    (``fn_index`` of ``/gradio_api/queue/join``) the app does not have."""

    async def no_such_name(request: Request, exc: FnIndexInferError) -> JSONResponse:
        name = request.path_params.get("api_name", "")
        return JSONResponse({"detail": f"no Gradio API route /{name}; GET /gradio_api/info "
                                       "lists them"}, 404)

    async def no_such_number(request: Request, exc: KeyError) -> JSONResponse:
        if not request.url.path.endswith("/queue/join"):
            raise exc  # anything else is unexpected: a 500, its traceback in the log
        return JSONResponse({"detail": f"no Gradio API route with fn_index {exc.args[0]}; GET "
                                       "/gradio_api/info lists the routes"}, 404)

    gradio_app.add_exception_handler(FnIndexInferError, no_such_name)
    gradio_app.add_exception_handler(KeyError, no_such_number)


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
    if hasattr(block, "choices"):  # a list a tab fills per page: one of this session's
        values = [repr(value) for _, value in block.choices or []]
        return ("one of " + ", ".join(values[:10]) + (", ..." if len(values) > 10 else "")
                if values else "one of the choices its tab lists, and it lists none yet")
    if isinstance(block, (gr.Number, gr.Slider)):
        return "a number" + _range(block.minimum, block.maximum)
    if isinstance(block, gr.Checkbox):
        return "true or false"
    if isinstance(block, gr.Textbox):
        return "text"
    return f"a {block.get_block_name()} value"


def _range(low: float | None, high: float | None) -> str:
    """The bounds a number field holds its value to, as the caller is told them."""
    if low is not None and high is not None:
        return f" from {low:g} to {high:g}"
    if low is not None:
        return f" of at least {low:g}"
    return f" of at most {high:g}" if high is not None else ""
