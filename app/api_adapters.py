"""vLLM's runtime LoRA endpoints on our server, so ``chatbot adapters push`` works (and is
tested) against a ``chatbot serve`` exactly as against vLLM:

    CHATBOT_ALLOW_RUNTIME_LORA=true chatbot serve
    curl http://127.0.0.1:7860/v1/load_lora_adapter -H 'Content-Type: application/json' \\
         -d '{"lora_name": "v2", "lora_path": "/srv/bot/.chatbot/adapters/v2"}'
    curl http://127.0.0.1:7860/v1/unload_lora_adapter -H 'Content-Type: application/json' \\
         -d '{"lora_name": "v2"}'

Both routes are off unless the server starts with ``CHATBOT_ALLOW_RUNTIME_LORA=true`` (vLLM's
switch is ``VLLM_ALLOW_RUNTIME_LORA_UPDATING``); off, they answer 404 as vLLM does without it.

A loaded adapter becomes a variant named ``lora_name``: the default variant (base model, prompt
template, retrieval) with the adapter applied, as vLLM applies a LoRA to its base model's
requests. ``GET /v1/models`` lists it.

Who may call these routes is ``app.auth``'s one rule: with a login or API key configured every
route needs one; with neither, ``chatbot serve`` listens only on a loopback address unless
started with ``--insecure``. ``lora_path`` is still treated as a stranger's input: only an
absolute path to a finished adapter directory (its manifest, PEFT config and safetensors
weights; never pickled ``.bin`` weights) trained on this server's base model and chat template
is loaded, and a refusal names no path of the server's but the one sent: it says neither
whether that path exists nor what it holds, nor where its links lead.
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
from dataclasses import replace
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from app.api_body import read_json
from app.api_schema import RequestError
from chatbot.adapters import ADAPTER_MANIFEST, AdapterManifest
from chatbot.engine import Engine
from chatbot.errors import ModelError
from chatbot.variants import Variant

ALLOW_ENV = "CHATBOT_ALLOW_RUNTIME_LORA"
ADAPTER_BODY = '{"lora_name": "v2", "lora_path": "/abs/adapters/v2"}'
ADAPTER_FILES = (ADAPTER_MANIFEST, "adapter_config.json", "adapter_model.safetensors")
"""What a loadable adapter directory holds; safetensors weights only, since a pickled ``.bin``
file can run code when loaded."""
LORA_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}")
"""A variant name: shown in ``/v1/models``, the logs and the web UI."""


def runtime_lora_allowed() -> bool:
    """Whether ``$CHATBOT_ALLOW_RUNTIME_LORA`` switches the routes on."""
    return os.environ.get(ALLOW_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def create_adapters_router(engine: Engine, allowed: bool | None = None) -> APIRouter:
    """``/v1/load_lora_adapter`` and ``/v1/unload_lora_adapter`` over ``engine``; ``allowed``
    defaults to ``runtime_lora_allowed()`` at start-up."""
    router = APIRouter(prefix="/v1")
    allowed = runtime_lora_allowed() if allowed is None else allowed
    changing = threading.Lock()  # check, load and add as one step: no two loads of one name
    loaded: set[str] = set()
    """Names this router loaded: the only ones it may unload (never a configured variant)."""

    def load(name: str, path: str) -> None:
        with changing:
            engine.add_variants({name: adapter_variant(engine, name, path)})
            loaded.add(name)

    def unload(name: str) -> None:
        with changing:
            if name not in loaded:
                raise RequestError(f"The lora adapter '{name}' cannot be found.",
                                   param="lora_name", code="not_found", status=404)
            engine.remove_variant(name)
            loaded.discard(name)

    @router.post("/load_lora_adapter")
    async def load_lora_adapter(request: Request) -> Response:
        if not allowed:
            return _switched_off()
        try:
            body = await _body(request)
            name, path = _lora_name(body), _text(body, "lora_path")
            await asyncio.to_thread(load, name, path)  # loading weights takes a while
        except RequestError as exc:
            return JSONResponse(exc.body(), status_code=exc.status)
        return PlainTextResponse(f"Success: LoRA adapter '{name}' added successfully.")

    @router.post("/unload_lora_adapter")
    async def unload_lora_adapter(request: Request) -> Response:
        if not allowed:
            return _switched_off()
        try:
            name = _lora_name(await _body(request))
            unload(name)
        except RequestError as exc:
            return JSONResponse(exc.body(), status_code=exc.status)
        return PlainTextResponse(f"Success: LoRA adapter '{name}' removed successfully.")

    return router


def adapter_variant(engine: Engine, name: str, path: str) -> Variant:
    """The default variant with the adapter at ``path`` attached, loaded and checked against
    the base model and chat template it was trained on; a ``RequestError`` (400) otherwise."""
    if name in engine.variants:
        raise RequestError(f"The lora adapter '{name}' has already been loaded (a variant of "
                           "that name exists); unload it first or choose another lora_name.",
                           param="lora_name", code="already_loaded")
    base = engine.variant(None)
    if base.backend is not None:
        raise RequestError(f"this server's default variant {base.name!r} generates on backend "
                           f"{base.backend!r}; an adapter can only attach to a model run here",
                           param="lora_path", code="no_local_model")
    adapter_dir = _adapter_dir(path)
    variant = replace(base, name=name, adapter_dir=adapter_dir)
    generator = engine.generator_for(replace(base, adapter_dir=None))
    held = getattr(generator, "adapters", {}).get(name)
    if held is not None and Path(held) != adapter_dir:  # its weights stay under that name
        raise RequestError(f"lora_name {name!r} named another adapter directory since this "
                           "server started; load this one under another lora_name, or restart "
                           "the server", param="lora_name", code="name_taken")
    try:
        engine.generator_for(variant)
    except ModelError as exc:
        raise _refusal(exc, adapter_dir, path, "adapter_refused") from None
    return variant


def _adapter_dir(text: str) -> Path:
    """The resolved adapter directory ``text`` names, or a 400 that says what is wrong. A path
    that does not exist, a file and a folder of other files get one answer: what the server's
    disk holds is not a caller's to learn."""
    fix = "give the absolute path, on this server, of a directory written by `chatbot train`"
    if not Path(text).is_absolute():
        raise RequestError(f"lora_path {text!r} is not an absolute path; {fix}",
                           param="lora_path", code="invalid_path")
    resolved = _holding_an_adapter(text)
    if resolved is None:
        raise RequestError(f"lora_path {text!r} is not an adapter directory on this server; "
                           f"{fix}, which holds {', '.join(ADAPTER_FILES[:-1])} and "
                           f"{ADAPTER_FILES[-1]}", param="lora_path", code="not_an_adapter")
    try:
        AdapterManifest.load(resolved)
    except ModelError as exc:
        raise _refusal(exc, resolved, text, "not_an_adapter") from None
    return resolved


def _holding_an_adapter(text: str) -> Path | None:
    """The path resolved, if it is a directory with every file of an adapter."""
    try:
        resolved = Path(text).resolve(strict=True)
        return resolved if all((resolved / f).is_file() for f in ADAPTER_FILES) else None
    except (OSError, RuntimeError, ValueError):  # a loop of links, a NUL byte, no permission
        return None


def _refusal(exc: ModelError, resolved: Path, text: str, code: str) -> RequestError:
    """``exc`` as a 400 that names the adapter as the caller did: where a link leads is the
    server's to know."""
    return RequestError(str(exc).replace(str(resolved), str(Path(text))), param="lora_path",
                        code=code)


async def _body(request: Request) -> dict:
    body = await read_json(request, ADAPTER_BODY)
    if not isinstance(body, dict):
        raise RequestError(f"the request body must be a JSON object such as {ADAPTER_BODY}",
                           code="invalid_json")
    return body


def _text(body: dict, key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value.strip():
        raise RequestError(f"{key} must be given as a non-empty string", param=key,
                           code="missing_field")
    return value.strip()


def _lora_name(body: dict) -> str:
    name = _text(body, "lora_name")
    if not LORA_NAME.fullmatch(name):
        raise RequestError(f"lora_name {name[:130]!r} is not a usable name: use up to 128 "
                           "letters, digits and . _ : / -, starting with a letter or digit",
                           param="lora_name", code="invalid_name")
    return name


def _switched_off() -> JSONResponse:
    """Like vLLM without its switch, where the routes do not exist (``chatbot adapters push``
    reads a 404 without an OpenAI error as "no runtime LoRA loading")."""
    return JSONResponse({"detail": f"Not Found: runtime LoRA loading is off; start the server "
                                   f"with {ALLOW_ENV}=true to allow it"}, status_code=404)
