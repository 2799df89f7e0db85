"""Request bodies and error bodies of the OpenAI-compatible API (``app.api``).

Requests are validated here, so a wrong field becomes an OpenAI-shaped error naming the field;
fields that OpenAI clients send and we don't use (``metadata``, ``store``...) are ignored, but
asking for what the server can't give (tool calls, a JSON answer, log probabilities, token
biases, several choices, audio) is not.
Types are strict, as OpenAI's are: ``"stream": "yes"`` or ``"max_tokens": "4"`` is an error, not
a guess (a whole number is still a valid ``temperature``).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from chatbot.errors import InputError
from chatbot.types import Message
from index.text import clean_text

if TYPE_CHECKING:  # app.api_body reads bodies and raises RequestError from here
    from app.api_body import RequestLimits

CLIENT_SYSTEM_ROLES = ("system", "developer")
"""Roles whose messages are not sent to the model: the variant's template owns the system prompt."""
ROLES = (*CLIENT_SYSTEM_ROLES, "user", "assistant")


class RequestError(InputError):
    """A request that can't be answered, with OpenAI's error fields."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None,
                 status: int = 400, type: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.param, self.code, self.status, self.type = param, code, status, type

    def body(self) -> dict:
        return error_body(str(self), self.type, self.param, self.code)


def error_body(message: str, type: str, param: str | None = None,
               code: str | None = None) -> dict:
    """OpenAI's error shape, which its clients turn into typed exceptions."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def is_api_path(path: str) -> bool:
    """Whether ``path`` is the OpenAI-compatible API's (``/v1``, and vLLM's ``/tokenize``),
    whose clients read errors in OpenAI's shape."""
    return path.startswith("/v1/") or path == "/tokenize"


ECHOED_CHARS = 100
"""How much of what a client sent (a model name, a header, a key) an error repeats."""


def echoed(text: str) -> str:
    """``text`` as an error repeats it: enough to spot a typo, not a stranger's megabyte
    (``index.text.shown`` is another thing: a file name made safe for a terminal line)."""
    return text if len(text) <= ECHOED_CHARS else text[:ECHOED_CHARS] + "…"


API_CLIENT = "api"
"""What the log calls a caller of the API that gave no credential (its sessions' client, its
corrections' author); ``api:NAME`` for one that did."""

_SHAPE = re.compile(r"(str|dict|list)(\[.*\])?")
"""How pydantic names the shape of a union field it tried, in an error's location."""

class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    role: str
    content: str | list[dict] | None = None
    """Text, or OpenAI's list of content parts (only ``text`` parts are accepted)."""
    tool_calls: list | None = None
    function_call: dict | None = None
    """An assistant's tool call (and its older name), read only to refuse it by name."""


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    include_usage: bool | None = False
    """Usage in a chunk of its own, with no choices, after the finish (OpenAI's shape)."""


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True, allow_inf_nan=False)

    model: str
    """The variant that answers (``GET /v1/models`` lists them)."""
    messages: list[ChatMessage]
    stream: bool | None = False
    """``null`` (as some clients send every field) is ``false``, as in OpenAI's API."""
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, ge=0.0, le=1.0)
    """0, which OpenAI takes, leaves only the likeliest token: greedy decoding."""
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    """The newer name of ``max_tokens``; wins when both are given."""
    stop: str | list[str] | None = None
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    """OpenAI's penalties on tokens the answer has used (``chatbot.penalties``)."""
    seed: int | None = Field(default=None, ge=-2**63, lt=2**64)
    """The same seed, settings and conversation give the same sampled answer (see
    ``GenerationSettings.seed``); OpenAI's range, a signed or unsigned 64-bit integer."""
    n: int | None = Field(default=1, ge=1)
    user: str | None = Field(default=None, max_length=200)
    """The person asking, recorded with the session (``app.api_sessions``); not a session id:
    chat apps send one ``user`` with all of a person's conversations."""
    safety_identifier: str | None = Field(default=None, max_length=200)
    """OpenAI's newer name for ``user``, read where ``user`` is not given."""
    tool_choice: str | dict | None = None
    tools: list | None = None
    """Taken only with ``tool_choice: "none"`` (read first, so it comes first)."""
    function_call: str | dict | None = None
    functions: list | None = None
    """The older names of ``tool_choice`` and ``tools``, read alike."""
    response_format: dict | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    logit_bias: dict[str, float] | None = None
    modalities: list[str] | None = None
    audio: dict | None = None
    """Read only to refuse what this server can't do: a client that asks for a tool call, a JSON
    answer, log probabilities, token biases or spoken audio and silently gets plain text would
    fail further on."""

    @field_validator("stream_options")
    @classmethod
    def _only_when_streaming(cls, value: StreamOptions | None,
                             info: ValidationInfo) -> StreamOptions | None:
        if value is not None and not info.data.get("stream"):
            raise ValueError("stream_options is taken only when stream is true; set stream to "
                             "true or leave stream_options out")
        return value

    @field_validator("tools", "functions")
    @classmethod
    def _no_tools(cls, value: list | None, info: ValidationInfo) -> list | None:
        choice = "tool_choice" if info.field_name == "tools" else "function_call"
        if value and info.data.get(choice) != "none":
            raise ValueError("this server answers in text and makes no tool calls; leave "
                             f"{info.field_name} out or set {choice} to \"none\"")
        return value

    @field_validator("tool_choice", "function_call")
    @classmethod
    def _no_tool_choice(cls, value: str | dict | None,
                        info: ValidationInfo) -> str | dict | None:
        if value not in (None, "none", "auto"):
            raise ValueError(f"this server makes no tool calls; set {info.field_name} to "
                             '"none" or leave it out')
        return value

    @field_validator("response_format")
    @classmethod
    def _text_only(cls, value: dict | None) -> dict | None:
        if value is not None and value.get("type") != "text":
            raise ValueError('this server answers in plain text; only {"type": "text"} is served')
        return value

    @field_validator("logprobs", "top_logprobs")
    @classmethod
    def _no_logprobs(cls, value: bool | int | None, info: ValidationInfo) -> bool | int | None:
        if value:
            raise ValueError("this server does not return log probabilities; leave "
                             f"{info.field_name} out")
        return value

    @field_validator("logit_bias")
    @classmethod
    def _no_logit_bias(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        if value:  # a token id means another token in each variant's model
            raise ValueError("this server does not bias tokens (each variant's model numbers "
                             "them its own way); leave logit_bias out or send {}")
        return value

    @field_validator("modalities")
    @classmethod
    def _text_modality(cls, value: list[str] | None) -> list[str] | None:
        if value not in (None, ["text"]):
            raise ValueError('this server answers in text only; send ["text"] or leave '
                             "modalities out")
        return value

    @field_validator("audio")
    @classmethod
    def _no_audio(cls, value: dict | None) -> dict | None:
        if value is not None:
            raise ValueError("this server answers in text only; leave audio out")
        return value

    @field_validator("n")
    @classmethod
    def _one_choice(cls, value: int | None) -> int | None:
        if value is not None and value > 1:  # each answer is a logged turn of the session
            raise ValueError(f"this server gives one answer (choice) per request, not {value}: "
                             "leave n out or send 1, and send the request again for another "
                             "answer")
        return value

    @field_validator("stop")
    @classmethod
    def _at_most_four_stops(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and len(value) > 4:
            raise ValueError("at most 4 stop sequences are allowed")
        return value

    @property
    def usage_chunk(self) -> bool:
        """Whether a stream ends with usage in a chunk of its own (``include_usage``)."""
        return bool(self.stream_options and self.stream_options.include_usage)

    def max_tokens_field(self) -> str:
        """The field that set the answer's length, to name in an error about it."""
        return "max_completion_tokens" if self.max_completion_tokens else "max_tokens"

    def stop_strings(self) -> tuple[str, ...]:
        stops = [self.stop] if isinstance(self.stop, str) else (self.stop or [])
        return tuple(s for s in stops if s)



def parse_request(body: object, limits: RequestLimits | None = None) -> ChatRequest:
    """The request, or a RequestError naming the first bad field or the limit it is over."""
    if not isinstance(body, dict):
        kind = {list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
            type(body), "number")
        raise RequestError('the request body must be a JSON object such as {"model": ..., '
                           f'"messages": [...]}}, not a JSON {kind}', code="invalid_request")
    try:
        chat = ChatRequest.model_validate(body)
    except ValidationError as exc:
        raise _field_error(exc.errors()) from None
    if limits is not None:
        _check_size(chat.messages, limits)
        _check_stops(chat, limits)
    return chat


def _field_error(errors: list[dict]) -> RequestError:
    """The first bad field. One that takes two shapes (``stop``: a string or a list of them)
    says what is wrong with each, under the field's name, not pydantic's name for the shape
    it tried (``stop.str``)."""
    field = _where(errors[0]["loc"], upto_shape=True)
    shapes = [e for e in errors if _where(e["loc"], upto_shape=True) == field]
    more = len(errors) - len(shapes)
    problems = f" (and {more} more)" if more else ""
    told = ", or ".join(f"{_where(e['loc'])}: {_complaint(e)}" for e in shapes)
    return RequestError(f"{told}{problems}", param=field, code="invalid_value")


def _complaint(error: dict) -> str:
    """Pydantic's message, but for a message that is not an object, which names the class
    that reads one (``instance of ChatMessage``), the only object a request holds, and for a
    check of this module, whose words pydantic prefixes with "Value error, "."""
    if error["type"] == "model_type":
        return 'Input should be an object such as {"role": "user", "content": "Hi"}'
    if error["type"] == "value_error":  # our own check's words, without "Value error, "
        return str(error["ctx"]["error"])
    return error["msg"]


def _where(loc: tuple, upto_shape: bool = False) -> str:
    """``loc`` as dotted parts, without the shapes a union tried, or ending before the first."""
    parts = []
    for part in loc:
        if isinstance(part, str) and _SHAPE.fullmatch(part):
            if upto_shape:
                break
            continue
        parts.append(str(part))
    return ".".join(parts)


def _check_stops(chat: ChatRequest, limits: RequestLimits) -> None:
    """Stop sequences are logged with every turn's settings: they count as text sent too."""
    chars = sum(len(stop) for stop in chat.stop_strings())
    if chars > limits.chars:
        raise RequestError(f"the stop sequences have {chars:,} characters; this server takes "
                           f"at most {limits.chars:,} (server.max_request_chars)",
                           param="stop", code="request_too_long")


def _check_size(messages: list[ChatMessage], limits: RequestLimits) -> None:
    if len(messages) > limits.messages:
        raise RequestError(f"the request has {len(messages):,} messages; this server takes at "
                           f"most {limits.messages:,} (server.max_request_messages); send fewer "
                           "earlier messages", param="messages", code="too_many_messages")
    chars = sum(len(text) for message in messages for text in _texts(message.content))
    if chars > limits.chars:
        raise RequestError(f"the request's messages have {chars:,} characters; this server "
                           f"takes at most {limits.chars:,} (server.max_request_chars); send "
                           "less history", param="messages", code="request_too_long")


def _texts(content: str | list[dict] | None) -> list[str]:
    """The texts of a message's content, for counting (``_text`` checks the parts later)."""
    if isinstance(content, str):
        return [content]
    return [part["text"] for part in content or () if isinstance(part.get("text"), str)]


def split_conversation(messages: list[ChatMessage]) -> tuple[str, list[Message], int]:
    """The question (last user message), the earlier turns, and how many system messages
    were left out (the variant's prompt template writes the system prompt)."""
    if not messages:
        raise RequestError("messages is empty; send at least one user message",
                           param="messages", code="empty_messages")
    turns, ignored = [], 0
    for i, message in enumerate(messages):
        if message.role not in ROLES:
            raise RequestError(f"messages[{i}].role is {message.role!r}; this server accepts "
                               f"{', '.join(ROLES)} (no tools or functions)",
                               param=f"messages[{i}].role", code="invalid_role")
        if message.role in CLIENT_SYSTEM_ROLES:
            ignored += 1
            continue
        turns.append(Message(message.role, clean_text(_text(message, i))))
    if not turns or turns[-1].role != "user" or messages[-1].role != "user":
        raise RequestError(f"the last message is from {messages[-1].role!r}; the last message "
                           "must be the user's question", param="messages",
                           code="last_message_not_user")
    if not turns[-1].content.strip():
        last = f"messages[{len(messages) - 1}].content"
        raise RequestError(f"{last} is empty; send the question as text", param=last,
                           code="empty_content")
    return turns[-1].content, turns[:-1], ignored


def _text(message: ChatMessage, i: int) -> str:
    if message.tool_calls or message.function_call:
        field = "tool_calls" if message.tool_calls else "function_call"
        raise RequestError(f"messages[{i}] is a tool call; this server makes no tool calls: "
                           "send the conversation without tool calls and their results",
                           param=f"messages[{i}].{field}", code="invalid_content")
    content = message.content
    if content is None:
        raise RequestError(f"messages[{i}].content is missing; send text",
                           param=f"messages[{i}].content", code="invalid_content")
    if isinstance(content, str):
        return content
    texts = []
    for part in content:
        if part.get("type") != "text":
            problem = f"has a {part.get('type')!r} part; only text parts are accepted"
        elif not isinstance(part.get("text"), str):
            problem = 'has a text part without its "text" string'
        else:
            texts.append(part["text"])
            continue
        raise RequestError(f"messages[{i}].content {problem}", param=f"messages[{i}].content",
                           code="invalid_content")
    return "\n".join(texts)
