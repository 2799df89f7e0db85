"""The OpenAI-compatible API on a real uvicorn server, driven by the real ``openai`` client."""

from __future__ import annotations

import json
import threading
import time

import httpx
import openai
import pytest

from api_serving import (ASK, JSON, PASSAGE, Served, client, engine,  # noqa: F401 (fixtures)
                         logged_turn, served)


def test_a_completion_carries_the_logged_answer_its_sources_and_usage(client, engine) -> None:
    completion = client.chat.completions.create(model="prompt", messages=ASK)
    answer = completion.choices[0].message.content
    turn = logged_turn(engine, completion.turn_id)
    assert answer and answer == turn["text"] and turn["status"] == "complete"
    assert completion.model == "prompt" and completion.object == "chat.completion"
    assert completion.choices[0].finish_reason in ("stop", "length")
    assert completion.sources == [{"n": 1, "chunk_id": "c1", "source": "docs/indexing.md",
                                   "location": "Indexing > Sync", "score": 0.87,
                                   "text": PASSAGE}]
    sent = json.loads(turn["messages_json"])
    assert PASSAGE in sent[-1]["content"]
    assert 0 < completion.usage.completion_tokens <= 8
    assert completion.usage.prompt_tokens > 20
    assert completion.usage.total_tokens == (completion.usage.prompt_tokens
                                             + completion.usage.completion_tokens)
    assert turn["client"] == "api" and completion.session_id.startswith("api-")
    assert completion.retrieval_query == ASK[-1]["content"]  # what the documents were searched with
    logged = json.loads(turn["attribution_json"])  # the log keeps what the client got
    assert logged["sentences"] == completion.attribution["sentences"]


def test_streamed_deltas_concatenate_to_the_logged_answer(client, engine) -> None:
    chunks = list(client.chat.completions.create(model="prompt", messages=ASK, stream=True))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks)
    last = chunks[-1]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert last.choices[0].finish_reason in ("stop", "length")
    assert [s["source"] for s in last.sources] == ["docs/indexing.md"]
    assert last.usage.completion_tokens > 0
    spans = [(s["start"], s["end"]) for s in last.attribution["sentences"]]
    assert spans and all(0 <= a < b <= len(streamed) for a, b in spans)  # spans of the content
    assert last.attribution["method"] == "lexical" and 0 <= last.attribution["score"] <= 1
    assert streamed and streamed == logged_turn(engine, last.turn_id)["text"]
    unstreamed = client.chat.completions.create(model="prompt", messages=ASK)
    assert streamed == unstreamed.choices[0].message.content  # greedy: the same answer


def test_earlier_messages_are_the_history_and_system_messages_are_left_out(client,
                                                                           engine) -> None:
    messages = [{"role": "system", "content": "Talk like a pirate."},
                {"role": "user", "content": "What is an index?"},
                {"role": "assistant", "content": "A searchable store of passages."},
                {"role": "user", "content": [{"type": "text", "text": "How is it built?"}]}]
    completion = client.chat.completions.create(model="plain", messages=messages,
                                                extra_headers={"X-Session-Id": "team-42"})
    sent = json.loads(logged_turn(engine, completion.turn_id)["messages_json"])
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
    assert "pirate" not in sent[0]["content"] and sent[0]["content"].startswith("You are")
    assert sent[1:] == [messages[1], messages[2], {"role": "user",
                                                   "content": "How is it built?"}]
    assert completion.system_messages_ignored == 1 and completion.sources == []
    assert completion.session_id == "team-42"


def test_sampling_settings_are_honoured_and_logged(client, engine) -> None:
    full = client.chat.completions.create(model="plain", messages=ASK, max_tokens=8)
    text = full.choices[0].message.content
    short = client.chat.completions.create(model="plain", messages=ASK, max_tokens=2)
    assert short.choices[0].finish_reason == "length"
    cut = short.choices[0].message.content
    assert text.startswith(cut) and len(cut) < len(text)
    stop = text.split()[len(text.split()) // 2]
    stopped = client.chat.completions.create(model="plain", messages=ASK, stop=[stop])
    assert stopped.choices[0].message.content == text[:text.find(stop)].strip()
    assert stopped.choices[0].finish_reason == "stop"
    last_word = text.split()[-1]
    at_limit = client.chat.completions.create(model="plain", messages=ASK, max_tokens=8,
                                              stop=[last_word])
    assert at_limit.choices[0].finish_reason == "stop"  # the stop string ended it, not the limit
    sampled = client.chat.completions.create(model="plain", messages=ASK, temperature=0.7,
                                             top_p=0.9, extra_headers={"X-Session-Id": "sampler"})
    settings = json.loads(logged_turn(engine, sampled.turn_id)["settings_json"])
    assert settings["temperature"] == 0.7 and settings["top_p"] == 0.9
    assert sampled.session_id == "sampler"


def test_models_lists_the_variants(client) -> None:
    models = client.models.list()
    assert [m.id for m in models.data] == ["prompt", "plain", "broken"]
    assert models.data[0].default is True and models.data[1].retrieval is False
    assert client.models.retrieve("plain").template == "plain"
    with pytest.raises(openai.NotFoundError, match="'gpt-4' does not exist"):
        client.models.retrieve("gpt-4")


def test_an_unknown_model_name_is_shown_cut_short_and_only_a_possible_adapter_rescans(
        client, engine, monkeypatch) -> None:
    """A name sent whole would come back whole (a megabyte); a name no adapter folder can have
    (too long, a "/") can't be a newly registered adapter, so the folder is not read for it."""
    scans = []
    find_variants = engine._find_variants
    monkeypatch.setattr(engine, "_find_variants", lambda: scans.append(1) or find_variants())
    for name, shown in (("m" * 500_000, "'" + "m" * 100 + "…'"),
                        ("../../etc/passwd", "'../../etc/passwd'")):
        with pytest.raises(openai.NotFoundError) as caught:
            client.chat.completions.create(model=name, messages=ASK)
        message = caught.value.body["message"]
        assert message == (f"the model {shown} does not exist; this bot's models (variants) "
                           "are: prompt, plain, broken")
    assert scans == []
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="v3", messages=ASK)
    assert scans == [1]  # trained while serving, perhaps


ERRORS = [
    ("unknown model", dict(model="gpt-4", messages=ASK), openai.NotFoundError,
     "model_not_found", "the model 'gpt-4' does not exist; this bot's models (variants) are: "
     "prompt, plain, broken"),
    ("empty messages", dict(model="prompt", messages=[]), openai.BadRequestError,
     "empty_messages", "messages is empty; send at least one user message"),
    ("bad role", dict(model="prompt", messages=[{"role": "tool", "content": "x",
                                                  "tool_call_id": "1"}]),
     openai.BadRequestError, "invalid_role",
     "messages[0].role is 'tool'; this server accepts system, developer, user, assistant"),
    ("last not user", dict(model="prompt", messages=[*ASK, {"role": "assistant",
                                                            "content": "Sure."}]),
     openai.BadRequestError, "last_message_not_user",
     "the last message is from 'assistant'; the last message must be the user's question"),
    ("blank question", dict(model="prompt", messages=[{"role": "user", "content": " \x00 "}]),
     openai.BadRequestError, "empty_content", "messages[0].content is empty; send the question"),
    ("too long", dict(model="prompt", messages=[{"role": "user", "content": "a" * 5000}]),
     openai.BadRequestError, "invalid_input",
     "the message has 5,000 characters; the limit is 2,000 (generation.max_message_chars)"),
    ("too many tokens asked", dict(model="prompt", messages=ASK, max_tokens=5000),
     openai.BadRequestError, "invalid_value", "max_tokens is 5,000; the model reads 1,024"),
    ("no room left for the prompt", dict(model="prompt", messages=ASK, max_tokens=1000),
     openai.BadRequestError, "invalid_value", "max_tokens is 1,000; the model reads 1,024"),
    ("no room left for the sources", dict(model="prompt", messages=ASK, max_tokens=870),
     openai.BadRequestError, "invalid_value", "max_tokens is 870; the model reads 1,024 tokens "
     "in all, prompt included, and that leaves no room for the 1 passage found for the "
     "question; ask for fewer"),
    ("bad temperature", dict(model="prompt", messages=ASK, temperature=3),
     openai.BadRequestError, "invalid_value", "temperature: Input should be less than or equal"),
    ("max_tokens as text", dict(model="prompt", messages=ASK, max_tokens="4"),
     openai.BadRequestError, "invalid_value", "max_tokens: Input should be a valid integer"),
    ("temperature as text", dict(model="prompt", messages=ASK, temperature="0.7"),
     openai.BadRequestError, "invalid_value", "temperature: Input should be a valid number"),
    ("missing adapter", dict(model="broken", messages=ASK), openai.InternalServerError,
     "model_unavailable", "adapters/missing does not exist; train one with"),
]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("case", ERRORS, ids=[e[0] for e in ERRORS])
def test_errors_have_openais_shape_and_the_server_keeps_serving(client, case, stream) -> None:
    _, request, error, code, message = case
    with pytest.raises(error) as caught:
        client.chat.completions.create(**request, stream=stream)
    assert caught.value.code == code
    assert message in caught.value.body["message"]
    assert set(caught.value.body) == {"message", "type", "param", "code"}
    if not stream:  # once per case is enough to show the server keeps serving
        assert client.chat.completions.create(model="plain", messages=ASK).choices[0].message


def test_too_many_tokens_asked_is_refused_naming_the_field_the_client_sent(client) -> None:
    """Newer openai clients send max_completion_tokens; a message about max_tokens, a field
    they never sent, leaves them looking for it."""
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="prompt", messages=ASK, max_completion_tokens=5000)
    assert refused.value.body["param"] == "max_completion_tokens"
    assert refused.value.body["message"].startswith("max_completion_tokens is 5,000; the model")


def test_each_streamed_event_stays_on_one_line_for_clients_that_split_lines_like_python(
        echo) -> None:
    """httpx's iter_lines() (str.splitlines()) also ends lines at U+2028, U+2029 and U+0085,
    which documents and answers can hold: an event cut there is no longer JSON."""
    from chatbot.engine import Engine
    from chatbot.variants import Variant
    from index.types import Chunk, Hit

    passage = "Line one\u2028line two\x85line three\u2029"
    found = [Hit(Chunk("c1", "docs/lines.md", passage, "Lines", "hash"), 0.9, 1)]
    engine = Engine({"prompt": Variant("prompt", "base", "rag", True)}, lambda model: echo,
                    search=lambda query, k: found)
    server = Served(engine)
    try:
        body = {"model": "prompt", "messages": ASK, "stream": True}
        with httpx.stream("POST", f"{server.base_url}/chat/completions", json=body) as response:
            events = [line for line in response.iter_lines() if line.startswith("data: {")]
    finally:
        server.stop()
    assert json.loads(events[-1].removeprefix("data: "))["sources"][0]["text"] == passage


def test_a_model_failure_asks_openai_clients_not_to_retry_it(served, engine) -> None:
    """The openai client retries a 500 twice unless told not to: three failed turns a call."""
    response = httpx.post(f"{served.base_url}/chat/completions", headers=JSON,
                          json={"model": "broken", "messages": ASK})
    assert response.status_code == 500 and response.headers["x-should-retry"] == "false"
    sent = []
    counting = httpx.Client(event_hooks={"request": [sent.append]})
    retrying = openai.OpenAI(base_url=served.base_url, api_key="unused", max_retries=2,
                             http_client=counting)
    with pytest.raises(openai.InternalServerError):
        retrying.chat.completions.create(model="broken", messages=ASK)
    assert len(sent) == 1


def test_bad_json_and_a_closed_stream(served, engine) -> None:
    response = httpx.post(f"{served.base_url}/chat/completions", content=b"{not json", headers=JSON)
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_json"
    latin1 = '{"model": "plain", "messages": [{"role": "user", "content": "caf\xe9"}]}'
    response = httpx.post(f"{served.base_url}/chat/completions", content=latin1.encode("latin-1"),
                          headers=JSON)
    assert response.status_code == 400 and "utf-8" in response.json()["error"]["message"]
    body = {"model": "plain", "messages": ASK, "stream": True, "max_tokens": 900}
    with httpx.stream("POST", f"{served.base_url}/chat/completions", json=body,
                      headers={"X-Session-Id": "walks-away"}) as response:
        next(line for line in response.iter_lines() if '"content": "' in line)
    deadline = time.monotonic() + 20
    while (turns := engine.log.conversation("walks-away").turns)[-1].status == "pending":
        assert time.monotonic() < deadline, "the interrupted turn was never closed"
        time.sleep(0.05)
    assert turns[-1].status == "interrupted"


def test_concurrent_requests_are_all_answered(served, engine) -> None:
    expected = served.client().chat.completions.create(model="prompt", messages=ASK)
    results: list = []

    def ask(i: int) -> None:
        client = served.client()
        if i % 2:
            chunks = client.chat.completions.create(model="prompt", messages=ASK, stream=True)
            results.append("".join(c.choices[0].delta.content or "" for c in chunks))
        else:
            reply = client.chat.completions.create(model="prompt", messages=ASK)
            results.append(reply.choices[0].message.content)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert results == [expected.choices[0].message.content] * 6


def test_parallel_requests_on_one_session_log_each_answer_after_its_own_question(
        served, engine) -> None:
    """The Review tab and the dataset build take an answer's question to be the user turn
    logged just before it: another request on the session must not land in between."""
    questions = [f"Question number {i} about indexing?" for i in range(8)]

    def ask(question: str) -> None:
        served.client().chat.completions.create(
            model="plain", messages=[{"role": "user", "content": question}],
            extra_headers={"X-Session-Id": "one-session-in-parallel"})

    threads = [threading.Thread(target=ask, args=(q,)) for q in questions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    turns = engine.log.conversation("one-session-in-parallel").turns
    assert [t.role for t in turns] == ["user", "assistant"] * len(questions)
    for question, answer in zip(turns[::2], turns[1::2]):
        assert answer.messages[-1]["content"].endswith(question.text)
    assert sorted(t.text for t in turns[::2]) == sorted(questions)


def test_the_ab_model_answers_with_the_sessions_sticky_variant(engine) -> None:
    assigned = {}
    server = Served(engine, assign_variant=lambda session: assigned.setdefault(session, "plain"))
    try:
        client = server.client()
        assert "ab" in [m.id for m in client.models.list()]
        completion = client.chat.completions.create(
            model="ab", messages=ASK, extra_headers={"X-Session-Id": "ab-user-1"})
        assert completion.model == "ab" and completion.system_fingerprint is None  # not shown
        turn = logged_turn(engine, completion.turn_id)
        assert turn["variant"] == "plain" and assigned == {"ab-user-1": "plain"}
    finally:
        server.stop()


def test_the_ab_model_that_models_lists_can_be_retrieved(engine) -> None:
    """Clients check a model exists with GET /v1/models/NAME before they use it."""
    server = Served(engine, assign_variant=lambda session: "plain")
    try:
        client = server.client()
        listed = next(m for m in client.models.list() if m.id == "ab")
        assert client.models.retrieve("ab") == listed
    finally:
        server.stop()


def test_without_ab_the_ab_model_is_unknown(client) -> None:
    with pytest.raises(openai.NotFoundError, match="the model 'ab' does not exist"):
        client.chat.completions.create(model="ab", messages=ASK)


def test_an_answer_the_blocklist_replaced_ends_with_content_filter(echo) -> None:
    """The stream cannot take back the pieces sent before the phrase: it says why it ended."""
    from chatbot.engine import Engine
    from chatbot.filters import blocklist_filter
    from chatbot.variants import Variant

    engine = Engine({"plain": Variant("plain", "base", "plain", False)}, lambda model: echo,
                    filters=[blocklist_filter(["secret plan"], "Blocked.")])
    server = Served(engine)
    try:
        client = server.client()
        question = [{"role": "user", "content": "one two three four five six seven eight nine "
                                                "ten eleven twelve and the secret plan"}]
        chunks = list(client.chat.completions.create(model="plain", messages=question,
                                                     stream=True, max_tokens=40))
        streamed = "".join(c.choices[0].delta.content or "" for c in chunks)
        assert "secret" not in streamed and chunks[-1].choices[0].finish_reason == "content_filter"
        whole = client.chat.completions.create(model="plain", messages=question, max_tokens=40)
        assert whole.choices[0].message.content == "Blocked."
        assert whole.choices[0].finish_reason == "content_filter"
        plain = client.chat.completions.create(model="plain", messages=ASK, max_tokens=40)
        assert plain.choices[0].finish_reason == "stop"
    finally:
        server.stop()


@pytest.mark.parametrize("first_words", [0, 1], ids=["before-any-token", "mid-answer"])
def test_an_unexpected_failure_tells_the_client_an_error_id_not_the_servers_details(
        echo, caplog, first_words) -> None:
    """An exception's text may hold file paths, addresses or data: a stranger gets an id to
    quote, the operator finds it beside the traceback in the server log."""
    from chatbot.engine import Engine
    from chatbot.variants import Variant

    class Failing(type(echo)):
        def stream(self, messages, settings, adapter=None, cancel=None):
            yield from ["first "][:first_words]
            raise RuntimeError("cannot read /srv/bots/private/weights.bin")

    engine = Engine({"plain": Variant("plain", "base", "plain", False)}, lambda model: Failing())
    server = Served(engine)
    try:
        with pytest.raises(openai.InternalServerError) as caught:
            server.client().chat.completions.create(model="plain", messages=ASK)
        with httpx.stream("POST", f"{server.base_url}/chat/completions", headers=JSON,
                          json={"model": "plain", "messages": ASK, "stream": True}) as response:
            last = [line for line in response.iter_lines() if line.startswith(("data: {", "{"))][-1]
    finally:
        server.stop()
    streamed = json.loads(last.removeprefix("data: "))  # before a token: a 500, else an event
    assert (response.status_code == 500) == (first_words == 0)
    assert caught.value.response.headers["x-should-retry"] == "false"  # each retry fails alike
    for error in (caught.value.body, streamed["error"]):
        assert "/srv/bots" not in error["message"] and "RuntimeError" not in error["message"]
        assert error["code"] == "internal_error" and error["type"] == "server_error"
        error_id = error["message"].partition("error id ")[2][:8]
        assert len(error_id) == 8, error["message"]
        logged = [r for r in caplog.records if error_id in r.getMessage()]
        assert logged and "/srv/bots/private" in str(logged[0].exc_info[1])


def test_a_session_another_client_began_gets_no_ab_assignment_from_a_refused_request(
        engine) -> None:
    """The refusal comes before the A/B split is asked: its counts are the sessions' own."""
    assigned = {}
    server = Served(engine, assign_variant=lambda session: assigned.setdefault(session, "plain"))
    engine.log.ensure_session("web-visitor-ab", "prompt")  # as the web UI begins one
    try:
        with pytest.raises(openai.ConflictError, match="begun by another client"):
            server.client().chat.completions.create(
                model="ab", messages=ASK, extra_headers={"X-Session-Id": "web-visitor-ab"})
    finally:
        server.stop()
    assert assigned == {}
