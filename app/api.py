"""OpenAI-compatible API over the engine: ``POST /v1/chat/completions`` and ``GET /v1/models``.

``chatbot serve`` mounts this router beside the web UI; any OpenAI client can then talk to it:

    client = openai.OpenAI(base_url="http://127.0.0.1:7860/v1", api_key=KEY_OR_ANYTHING)
    client.chat.completions.create(model="prompt",
                                   messages=[{"role": "user", "content": "..."}])

How OpenAI's fields map onto the bot:
- ``model`` names a variant (``GET /v1/models`` lists them).
- The last message is the question; earlier user and assistant messages are the history. The API
  is stateless: the client's history is all the model sees of the conversation.
- System (and ``developer``) messages are not sent to the model: the variant's prompt template
  writes the system prompt, because a fine-tuned variant was trained on exactly that prompt and
  A/B comparisons need every surface to send the same one. The response counts them in
  ``system_messages_ignored``.
- ``temperature``, ``top_p``, ``max_tokens`` (or ``max_completion_tokens``) and ``stop`` override
  the bot's generation settings; left out, the bot's config applies (greedy by default, unlike
  OpenAI's temperature 1). ``seed`` makes a sampled answer repeatable, and
  ``presence_penalty`` and ``frequency_penalty`` discourage repeats (``chatbot.penalties``);
  all three are sent on to a remote backend.
- The session is the ``X-Session-Id`` header's, else the one whose logged turns are the
  earlier messages sent (the conversation continued), else a new one (``app.api_sessions``);
  ``user`` names the person, recorded with the caller as the session's client. Every turn is
  logged through the engine.
- Extra response fields: ``sources`` (the passages, numbered as the answer cites them),
  ``turn_id`` (the logged answer, for feedback), ``session_id``, ``timings`` and
  ``attribution`` (each sentence's character span in the content, the spans of the source
  sentences that back it by passage ``n``, scores, and the answer's support score and policy
  action; ``null`` when off); when streaming they ride on the last chunk, the one with
  ``finish_reason``, with ``usage`` (with ``stream_options.include_usage`` the usage follows
  in a chunk of its own with no choices, as OpenAI sends it). With ``attribution.policy:
  withhold`` the content arrives in one piece once checked.
- Errors use OpenAI's shape ``{"error": {"message", "type", "param", "code"}}``. Errors found
  before the first token get an HTTP status; one after it arrives as a last ``data: {"error"}``.
  A stream's headers wait at most ``STREAM_START_S`` for the first token (an error found later
  arrives in the stream), and a silent stream sends an SSE comment every ``KEEPALIVE_S``.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import replace

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from app.api_errors import BUSY_RETRY_AFTER_S, error_parts, error_response
from app.api_models import AB_MODEL, ab_card, model_card, system_fingerprint, unknown_model
from app.api_body import RequestLimits, body_bytes, read_json
from app.api_sessions import api_client, session_for
from app.api_schema import (API_CLIENT, ChatRequest, RequestError, parse_request,
                            split_conversation)
from chatbot.adapters import could_be_registered
from chatbot.answer_stream import CUT_SHORT_BY_SHUTDOWN, AnswerStream
from chatbot.engine import Engine
from chatbot.errors import InputError, TooManyNewTokens
from chatbot.generate import GenerationSettings
from chatbot.types import Message, Reply


DISCONNECT_POLL_S = 0.25
"""How often a request waiting for its answer checks that its client is still there."""
STREAM_START_S = 0.5
"""How long a stream waits for its answer's first event before it sends its headers: an error
found at once (a prompt too long, a model that can't load) keeps its HTTP status, and a long
prompt or a wait for the model leaves no proxy or client without a response meanwhile."""
KEEPALIVE_S = 4.0
"""How long a stream stays silent before it sends an SSE comment, which clients skip, so that a
proxy's idle limit (nginx's 60 s) or a client's read timeout (httpx's 5 s by default, the
shortest in common use) does not end it while the model is busy with other answers or a long
prompt."""
KEEPALIVE = ": keep-alive\n\n"

STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
"""A stream is sent as it comes: no cache keeps it, and nginx in front does not buffer it (it
would otherwise hand the client the whole answer at its end)."""
READ = ["GET", "HEAD"]
"""HTTP requires HEAD wherever GET is taken (uvicorn sends the headers without the body)."""
CHAT_ROUTE = "chat completion"
"""What the server log calls a failed ``/v1/chat/completions``."""
CHAT_BODY = 'an object such as {"model": "prompt", "messages": [{"role": "user", "content": "Hi"}]}'


LINE_BREAKS = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})
"""The characters beside CR and LF at which str.splitlines(), and so httpx's iter_lines(), ends
a line; JSON leaves them unescaped, so they are escaped here: a client reading the stream by
lines gets every event whole."""


def create_api_router(engine: Engine,
                      assign_variant: Callable[[str], str] | None = None,
                      limits: RequestLimits | None = None,
                      max_waiting_answers: int | None = None) -> APIRouter:
    """The ``/v1`` routes over ``engine`` (``app.auth`` guards them with the rest of the
    server); ``assign_variant(session_id)`` (A/B on) serves the ``ab`` model; ``limits`` caps
    what one request may send and ``max_waiting_answers`` how many answers may run or wait at
    once (``None``: no cap). An adapter registered by ``chatbot train`` while the server runs
    is served without a restart (``Engine.add_new_variants``)."""
    router = APIRouter(prefix="/v1")
    answers = AnswerCount(max_waiting_answers)
    served_since = int(time.time())  # the models' ``created`` where no file says it

    def served(name: str) -> bool:
        """Whether ``name`` is served, once adapters registered since the start are added."""
        if name not in engine.variants and could_be_registered(name):
            engine.add_new_variants()
        return name in engine.variants

    @router.api_route("/models", methods=READ)
    async def list_models() -> JSONResponse:
        # a card's max_model_len may load a tokenizer or ask a remote server: off the loop
        await asyncio.to_thread(engine.add_new_variants)
        cards = await asyncio.to_thread(
            lambda: [model_card(engine, v, served_since) for v in engine.variants.values()])
        if assign_variant is not None:
            cards.append(ab_card(engine, served_since))
        return JSONResponse({"object": "list", "data": cards})

    @router.api_route("/models/{name:path}", methods=READ)  # a name may hold "/" (team/v2)
    async def get_model(name: str) -> JSONResponse:
        if assign_variant is not None and name == AB_MODEL:
            return JSONResponse(ab_card(engine, served_since))
        if not await asyncio.to_thread(served, name):
            return error_response(unknown_model(engine, name), "model card")
        card = await asyncio.to_thread(model_card, engine, engine.variants[name], served_since)
        return JSONResponse(card)

    @router.post("/chat/completions", response_model=None)
    async def chat_completions(request: Request) -> JSONResponse | StreamingResponse:
        try:
            chat = parse_request(await read_json(request, CHAT_BODY, body_bytes(limits)), limits)
            conversation = split_conversation(chat.messages)
            client = api_client(request, chat)
            session_id = await asyncio.to_thread(session_for, engine, request, conversation[1],
                                                 client)
            if assign_variant is not None and chat.model == AB_MODEL:
                variant = assign_variant(session_id)
            elif chat.model in engine.variants or await asyncio.to_thread(served, chat.model):
                variant = chat.model
            else:
                raise unknown_model(engine, chat.model)
            job = Answering(engine, chat, conversation, session_id, variant, answers, client)
        except InputError as exc:
            return error_response(exc, CHAT_ROUTE)
        try:  # errors before the first token (a stream: its first STREAM_START_S) get a status
            first = await job.next_unless_gone(request, STREAM_START_S if chat.stream else None)
            if first is not None and first[0] == "error":
                return error_response(first[1], CHAT_ROUTE)
            if chat.stream:
                return StreamingResponse(_sse(job, first, request), media_type="text/event-stream",
                                         headers=STREAM_HEADERS)
            return await _complete(job, first, request)
        except ClientGone:
            return Response(status_code=499)  # nobody reads it; the answer has stopped

    return router


class AnswerCount:
    """API answers running or waiting for the model. Past ``limit`` a request is refused with
    a 429 at once, so no client can queue unbounded work (``server.max_waiting_answers``)."""

    def __init__(self, limit: int | None) -> None:
        self.limit, self.now = limit, 0
        self._lock = threading.Lock()  # answers end on their own threads

    def admit(self) -> None:
        with self._lock:
            if self.limit is not None and self.now >= self.limit:
                raise RequestError(f"the server is busy: {self.now} answers are running or "
                                   "waiting, as many as server.max_waiting_answers allows; "
                                   f"retry after {BUSY_RETRY_AFTER_S} s", code="server_busy",
                                   status=429, type="rate_limit_error")
            self.now += 1

    def release(self) -> None:
        with self._lock:
            self.now -= 1


class Answering:
    """One answer produced on its own thread, so the event loop never waits for the model.

    Events come through an asyncio queue: ``("piece", text)``..., then ``("done", reply)`` or
    ``("error", exception)``. ``cancel()`` (a client that went away, even
    before its answer started) stops generation at the next token; the engine logs the turn as
    interrupted. It counts in ``answers`` from acceptance until its thread ends.
    """

    def __init__(self, engine: Engine, chat: ChatRequest,
                 conversation: tuple[str, list[Message], int], session_id: str,
                 variant: str, answers: AnswerCount, client: str = API_CLIENT) -> None:
        self.engine, self.chat, self.session_id, self.client = engine, chat, session_id, client
        self.variant = variant
        """The variant that answers; ``chat.model`` (shown in replies) may be ``ab``."""
        self.question, self.history, self.system_ignored = conversation
        """The question, the earlier turns, and the system messages left out
        (``split_conversation``)."""
        self.settings = _settings(engine.settings, chat)
        self.id, self.created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue = asyncio.Queue()
        self._waiting: asyncio.Future | None = None  # the next event, awaited across ticks
        self._cancelled = threading.Event()
        self._stream: AnswerStream | None = None
        self.fingerprint: str | None = None
        """``system_fingerprint``, set before the first event; ``None`` for ``ab``, whose
        variant is not shown."""
        self._answers = answers
        answers.admit()
        threading.Thread(target=self._work, daemon=True, name=f"api-{self.id[-8:]}").start()

    async def next_unless_gone(self, request: Request,
                               within_s: float | None = None) -> tuple[str, object] | None:
        """The next event, or ``None`` if none came ``within_s`` (the next call goes on
        waiting for it); if the client disconnects while we wait (a long prompt, a busy
        model), the answer is cancelled and ``ClientGone`` raised."""
        if self._waiting is None:
            self._waiting = asyncio.ensure_future(self._queue.get())
        deadline = None if within_s is None else time.monotonic() + within_s
        while True:
            timeout = DISCONNECT_POLL_S if deadline is None else min(
                DISCONNECT_POLL_S, max(deadline - time.monotonic(), 0))
            done, _ = await asyncio.wait({self._waiting}, timeout=timeout)
            if done:
                waiting, self._waiting = self._waiting, None
                return waiting.result()
            if await request.is_disconnected():
                self._waiting.cancel()
                self.cancel()
                raise ClientGone
            if deadline is not None and time.monotonic() >= deadline:
                return None

    def cancel(self) -> None:
        """Stop the answer at its next token (the client went away); never blocks."""
        self._cancelled.set()
        if self._stream is not None:
            self._stream.cancel()

    def _work(self) -> None:
        try:
            reply = self._answer()
        except Exception as exc:  # handed to the request, which answers with an error
            self._put("error", exc)
            return
        finally:
            self._answers.release()
        self._put("done", reply)

    def _answer(self) -> Reply:
        if self.chat.model != AB_MODEL:
            self.fingerprint = system_fingerprint(self.engine, self.engine.variant(self.variant))
        stream = self._stream = self.engine.answer(
            self.session_id, self.question, self.variant, self.settings, self.history,
            client=self.client)
        if self._cancelled.is_set():  # the client left while the answer was being set up
            stream.cancel()
        try:
            for piece in stream:
                self._put("piece", piece)
        except TooManyNewTokens as exc:  # found before anything is logged
            field = self.chat.max_tokens_field()
            raise RequestError(f"{field} is {exc.asked:,}; {exc.problem}", param=field,
                               code="invalid_value") from None
        if stream.cut_short_by_shutdown:
            raise RequestError(CUT_SHORT_BY_SHUTDOWN, code="server_shutting_down", status=503,
                               type="server_error")
        return stream.reply

    def _put(self, kind: str, value: object) -> None:
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, (kind, value))
        except RuntimeError:  # the event loop is closed: the server is shutting down
            self.cancel()

    def chunk(self, delta: dict, finish_reason: str | None = None, **extra: object) -> dict:
        """A chunk of the answer; with ``include_usage`` each says ``usage: null`` until
        ``usage_chunk``, as OpenAI's do."""
        usage = {"usage": None} if self.chat.usage_chunk else {}
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                "model": self.chat.model, "system_fingerprint": self.fingerprint,
                "choices": [{"index": 0, "delta": delta, "logprobs": None,
                             "finish_reason": finish_reason}], **usage, **extra}

    def usage_chunk(self, reply: Reply) -> dict:
        """The chunk ``include_usage`` asks for after the finish: no choices, the usage."""
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                "model": self.chat.model, "system_fingerprint": self.fingerprint, "choices": [],
                "usage": self.usage(reply)}

    @staticmethod
    def usage(reply: Reply) -> dict:
        completion_tokens = int(reply.timings.get("tokens") or 0)
        return {"prompt_tokens": reply.prompt_tokens, "completion_tokens": completion_tokens,
                "total_tokens": reply.prompt_tokens + completion_tokens}

    def extras(self, reply: Reply) -> dict:
        """Our fields: sources, turn id, session id, timings, the search query, attribution."""
        attribution = reply.attribution.as_dict(public=True) if reply.attribution else None
        return {"sources": reply.sources(), "turn_id": reply.turn_id,
                "session_id": self.session_id, "timings": reply.timings,
                "retrieval_query": reply.retrieval_query,
                "system_messages_ignored": self.system_ignored, "attribution": attribution}

    @staticmethod
    def finish_reason(reply: Reply) -> str:
        """OpenAI's reasons; ``content_filter`` when the blocklist replaced the answer, so a
        streaming client knows the pieces it got were not the answer's end."""
        if "blocklist" in reply.filtered:
            return "content_filter"
        return "length" if reply.reached_token_limit else "stop"


async def _complete(job: Answering, first: tuple[str, object],
                    request: Request) -> JSONResponse:
    kind, value = first
    while kind == "piece":
        kind, value = await job.next_unless_gone(request)
    if kind == "error":
        return error_response(value, CHAT_ROUTE)
    reply = value
    message = {"role": "assistant", "content": reply.text, "refusal": None}
    return JSONResponse({
        "id": job.id, "object": "chat.completion", "created": job.created,
        "model": job.chat.model, "system_fingerprint": job.fingerprint,
        "choices": [{"index": 0, "message": message, "logprobs": None,
                     "finish_reason": job.finish_reason(reply)}],
        "usage": job.usage(reply), **job.extras(reply)})


async def _sse(job: Answering, first: tuple[str, object] | None,
               request: Request) -> AsyncIterator[str]:
    """OpenAI's chunk stream: a role chunk, content chunks, a final chunk, ``[DONE]``; a
    comment (``KEEPALIVE``) at once where the answer has not begun, and while it is silent."""
    try:
        event = first
        while event is None:
            yield KEEPALIVE
            event = await job.next_unless_gone(request, KEEPALIVE_S)
        yield _event(job.chunk({"role": "assistant", "content": ""}))  # its fingerprint is set
        while event is None or event[0] == "piece":
            yield KEEPALIVE if event is None else _event(job.chunk({"content": event[1]}))
            event = await job.next_unless_gone(request, KEEPALIVE_S)
        kind, value = event
        if kind == "error":
            yield _event(error_parts(value, CHAT_ROUTE)[1])
        elif job.chat.usage_chunk:
            yield _event(job.chunk({}, job.finish_reason(value), **job.extras(value)))
            yield _event(job.usage_chunk(value))
        else:  # usage rides on the finish, where clients that never ask for it find it
            yield _event(job.chunk({}, job.finish_reason(value), usage=job.usage(value),
                                   **job.extras(value)))
        yield "data: [DONE]\n\n"
    except ClientGone:
        return
    finally:
        job.cancel()  # the client went away (or we are done): stop generating


class ClientGone(Exception):
    """The client disconnected before its answer was ready."""


def _event(data: dict) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False).translate(LINE_BREAKS)}\n\n"


def _settings(base: GenerationSettings, chat: ChatRequest) -> GenerationSettings:
    max_tokens = chat.max_completion_tokens or chat.max_tokens or base.max_new_tokens
    temperature = base.temperature if chat.temperature is None else chat.temperature
    if chat.top_p == 0:  # greedy, which the model and a remote backend take as temperature 0
        temperature = 0.0
    return replace(base, max_new_tokens=max_tokens, temperature=temperature,
                   top_p=chat.top_p or base.top_p, stop=chat.stop_strings() or base.stop,
                   seed=chat.seed, presence_penalty=chat.presence_penalty or 0.0,
                   frequency_penalty=chat.frequency_penalty or 0.0)
