"""vLLM's ``POST /tokenize`` over the bot's variants, so a bot that generates on this server
(``backend:`` in its config) or any vLLM client counts a prompt as the variant's model does.

    curl -s http://127.0.0.1:7860/tokenize -H "Authorization: Bearer $CHATBOT_API_KEY" \\
         -d '{"model": "prompt", "messages": [{"role": "user", "content": "Hi"}]}'
    {"count": 9, "max_model_len": 8192, "tokens": [1, 9690, ...]}

Requests take vLLM's two shapes: ``messages`` (system, user and assistant messages with text
content, counted through the model's chat template as given, with ``add_generation_prompt``,
default true) or ``prompt`` (plain text, with ``add_special_tokens``, default true); ``model``
names a variant (the default one when left out). The response's ``tokens`` are the ids where the
variant's tokenizer is on this machine, and ``null`` where the variant counts through its own
server or by estimate (then ``count`` is the variant's count, with the generation prompt and
without special tokens). It sits behind ``app.auth`` like every route, and takes no more
messages or characters than a chat request may (``RequestLimits``).
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.api_errors import error_response
from app.api_models import unknown_model
from app.api_body import RequestLimits, body_bytes, read_json
from app.api_schema import RequestError
from chatbot.engine import Engine
from chatbot.errors import ChatbotError, ConfigError, ModelError
from chatbot.generate import Generator, chat_ids
from chatbot.types import Message
from chatbot.variants import Variant


class TextMessage(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    role: Literal["system", "user", "assistant"]
    content: str


class TokenizeChat(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    model: str | None = Field(default=None, max_length=200)
    messages: list[TextMessage] = Field(min_length=1)
    add_generation_prompt: bool = True


class TokenizePrompt(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    model: str | None = Field(default=None, max_length=200)
    prompt: str
    add_special_tokens: bool = True


TOKENIZE_BODY = 'an object with model and messages or prompt'
TOKENIZE_ROUTE = "tokenize"
"""What the server log calls a failed ``/tokenize``."""
WHAT_TO_SEND = ('send messages (a chat, such as [{"role": "user", "content": "Hi"}]) or prompt '
                '(text)')


def create_tokenize_router(engine: Engine, limits: RequestLimits | None = None) -> APIRouter:
    """``POST /tokenize`` (at the root, where vLLM serves it) over ``engine``'s variants."""
    router = APIRouter()

    @router.post("/tokenize")
    async def tokenize(request: Request) -> JSONResponse:
        try:
            asked = parse_tokenize(await read_json(request, TOKENIZE_BODY, body_bytes(limits)),
                                   limits)
            generator = await asyncio.to_thread(_generator, engine, asked.model)
            counted = await asyncio.to_thread(tokenized, generator, asked)
        except ChatbotError as exc:  # a bad request, a refused conversation, a model down
            return error_response(exc, TOKENIZE_ROUTE)
        return JSONResponse(counted)

    return router


def parse_tokenize(body: object, limits: RequestLimits | None
                   ) -> TokenizeChat | TokenizePrompt:
    """The request, or a ``RequestError`` naming the first bad field or the limit it is over."""
    if not isinstance(body, dict):
        raise RequestError(f"the request body is not a JSON object; {WHAT_TO_SEND}",
                           param="messages", code="invalid_value")
    if "messages" not in body and "prompt" not in body:
        raise RequestError(f"the request has neither messages nor prompt; {WHAT_TO_SEND}",
                           param="messages", code="invalid_value")
    if "messages" in body and "prompt" in body:
        raise RequestError("send a JSON object with either messages (a chat) or prompt (text), "
                           "not both", param="messages", code="invalid_value")
    shape = TokenizeChat if "messages" in body else TokenizePrompt
    try:
        asked = shape.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise RequestError(f"{where}: {first['msg']}", param=where, code="invalid_value") from None
    if limits is not None:
        _check_size(asked, limits)
    return asked


def _check_size(asked: TokenizeChat | TokenizePrompt, limits: RequestLimits) -> None:
    chat = isinstance(asked, TokenizeChat)
    texts = [m.content for m in asked.messages] if chat else [asked.prompt]
    if chat and len(texts) > limits.messages:
        raise RequestError(f"the request has {len(texts):,} messages; this server takes at "
                           f"most {limits.messages:,} (server.max_request_messages)",
                           param="messages", code="too_many_messages")
    chars = sum(map(len, texts))
    if chars > limits.chars:
        raise RequestError(f"the request has {chars:,} characters; this server takes at most "
                           f"{limits.chars:,} (server.max_request_chars)",
                           param="messages" if chat else "prompt", code="request_too_long")


def _generator(engine: Engine, name: str | None) -> Generator:
    name = name or engine.default_variant
    variant = engine.variants.get(name)
    if variant is None:
        raise unknown_model(engine, name)
    return base_generator(engine, variant)


def base_generator(engine: Engine, variant: Variant) -> Generator:
    """The variant's base model, which is what counts: its adapter is not loaded for this."""
    return engine.generator_for(replace(variant, adapter_dir=None))


def max_model_len(engine: Engine, variant: Variant) -> int | None:
    """Tokens the variant's model reads (``/v1/models`` cards carry it, as vLLM's do); None
    when the model can't be loaded, whose error an answer reports."""
    try:
        return base_generator(engine, variant).context_window
    except (ModelError, ConfigError):
        return None


def tokenized(generator: Generator, asked: TokenizeChat | TokenizePrompt) -> dict:
    """vLLM's response: ``count``, ``max_model_len`` and ``tokens`` (ids, or None without a
    tokenizer here)."""
    ids = _ids(generator, asked)
    if ids is not None:
        number = len(ids)
    elif isinstance(asked, TokenizeChat):
        number = generator.count_tokens([Message(m.role, m.content) for m in asked.messages])
    else:
        number = generator.count_text(asked.prompt)
    return {"count": number, "max_model_len": generator.context_window, "tokens": ids}


def _ids(generator: Generator, asked: TokenizeChat | TokenizePrompt) -> list[int] | None:
    tokenizer = getattr(generator, "tokenizer", None)  # remote variants may have none here
    if tokenizer is None:
        return None
    if isinstance(asked, TokenizePrompt):
        return tokenizer.encode(asked.prompt, add_special_tokens=asked.add_special_tokens)
    if not tokenizer.chat_template:
        return None
    return chat_ids(tokenizer, [m.model_dump() for m in asked.messages],
                    asked.add_generation_prompt)
