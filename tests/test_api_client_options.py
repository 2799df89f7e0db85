"""Options that OpenAI clients (the ``openai`` package, LangChain's ChatOpenAI and the chat apps
built on them) send, answered as OpenAI answers them."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from api_serving import ASK, client, engine, logged_turn, served  # noqa: F401 (fixtures)


def test_include_usage_streams_usage_once_in_its_own_chunk_before_done(client) -> None:
    """OpenAI's shape: every chunk has ``usage: null`` but one more, with no choices, after the
    finish; a client that adds up the usage of every chunk (LangChain) counts it once."""
    chunks = list(client.chat.completions.create(
        model="plain", messages=ASK, stream=True, stream_options={"include_usage": True}))
    *answer, finish, usage = chunks
    assert usage.choices == [] and usage.usage.completion_tokens > 0
    assert usage.usage.total_tokens == usage.usage.prompt_tokens + usage.usage.completion_tokens
    assert finish.choices[0].finish_reason in ("stop", "length")
    assert all(chunk.usage is None for chunk in [*answer, finish])
    assert finish.turn_id and finish.sources == []  # the bot's own fields stay with the finish


def test_stream_options_without_streaming_is_refused_as_openai_does(client) -> None:
    with pytest.raises(openai.BadRequestError, match="only when stream is true") as refused:
        client.chat.completions.create(model="plain", messages=ASK,
                                       stream_options={"include_usage": True})
    assert refused.value.body["param"] == "stream_options"


TOOL = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}


def test_tools_offered_with_tool_choice_none_get_a_text_answer(client) -> None:
    """A client that keeps its tools in every request (LangChain's bind_tools) and says
    ``none`` asks for text, which is what this server gives."""
    answer = client.chat.completions.create(model="plain", messages=ASK, tools=[TOOL],
                                            tool_choice="none")
    assert answer.choices[0].message.content and answer.choices[0].message.tool_calls is None
    older = client.chat.completions.create(model="plain", messages=ASK,
                                           functions=[TOOL["function"]], function_call="none")
    assert older.choices[0].message.content
    with pytest.raises(openai.BadRequestError, match="leave tools out") as refused:
        client.chat.completions.create(model="plain", messages=ASK, tools=[TOOL])
    assert refused.value.body["param"] == "tools"


def test_top_p_zero_which_openai_takes_is_greedy_decoding(client, engine) -> None:
    """Only the likeliest token is left at top_p 0: clients send it for repeatable answers."""
    greedy = client.chat.completions.create(model="plain", messages=ASK, temperature=0)
    nucleus = client.chat.completions.create(model="plain", messages=ASK, temperature=1,
                                             top_p=0)
    assert nucleus.choices[0].message.content == greedy.choices[0].message.content
    settings = json.loads(logged_turn(engine, nucleus.turn_id)["settings_json"])
    assert settings["temperature"] == 0
    with pytest.raises(openai.BadRequestError, match="top_p: Input should be greater than or"):
        client.chat.completions.create(model="plain", messages=ASK, top_p=-0.1)


@pytest.mark.parametrize("stream", [False, True])
def test_more_than_one_choice_is_refused_saying_what_to_send(client, stream) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="plain", messages=ASK, n=3, stream=stream)
    assert refused.value.body == {
        "message": "n: this server gives one answer (choice) per request, not 3: leave n out "
                   "or send 1, and send the request again for another answer",
        "type": "invalid_request_error", "param": "n", "code": "invalid_value"}
    assert client.chat.completions.create(model="plain", messages=ASK, n=1).choices


@pytest.mark.parametrize("content", ["", " \n", []])
def test_an_empty_question_is_refused_naming_the_message(client, content) -> None:
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
                {"role": "user", "content": content}]
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="plain", messages=messages)
    assert refused.value.body == {
        "message": "messages[2].content is empty; send the question as text",
        "type": "invalid_request_error", "param": "messages[2].content", "code": "empty_content"}


@pytest.mark.parametrize("stream", [False, True])
def test_a_question_too_long_for_the_model_has_openais_context_length_code(client,
                                                                          stream) -> None:
    """Clients recognise the code (LangChain raises its context overflow error on it, and
    may then trim the conversation)."""
    question = [{"role": "user", "content": "7" * 1990}]  # a token a digit
    with pytest.raises(openai.BadRequestError, match="shorten the message") as refused:
        client.chat.completions.create(model="plain", messages=question, stream=stream)
    assert refused.value.code == "context_length_exceeded"
    assert refused.value.body["param"] == "messages"


def test_a_history_with_tool_calls_is_refused_saying_so(client) -> None:
    """An agent's conversation (LangChain's) holds the model's tool calls, without content, and
    their results: the error names the tool call, not a missing text."""
    call = {"id": "call_1", "type": "function",
            "function": {"name": "lookup", "arguments": "{}"}}
    messages = [*ASK, {"role": "assistant", "content": None, "tool_calls": [call]},
                {"role": "tool", "content": "found", "tool_call_id": "call_1"},
                {"role": "user", "content": "Thanks"}]
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="plain", messages=messages)
    assert refused.value.body["message"] == (
        "messages[1] is a tool call; this server makes no tool calls: send the conversation "
        "without tool calls and their results")
    assert refused.value.body["param"] == "messages[1].tool_calls"


def test_a_stream_asks_proxies_in_front_not_to_hold_it_back(served) -> None:
    """nginx buffers a response unless told not to: behind it, a stream would arrive whole at
    its end. ``X-Accel-Buffering: no`` is nginx's per-response switch."""
    body = {"model": "plain", "messages": ASK, "stream": True}
    with httpx.stream("POST", f"{served.base_url}/chat/completions", json=body) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-accel-buffering"] == "no"
        assert response.headers["cache-control"] == "no-cache"
