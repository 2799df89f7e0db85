"""Which logged session an API request continues. Chat apps send the conversation so far in
``messages``, and some (LibreChat) each person's id as ``user`` with every conversation: each
conversation is a session of its own, and ``user`` says whose it is."""

from __future__ import annotations

import openai
import pytest

from api_serving import ASK, client, engine, served  # noqa: F401 (fixtures)

OTHER = [{"role": "user", "content": "What is a variant?"}]


def asked(client, messages: list[dict], user: str, stream: bool = False) -> tuple[str, str]:
    """(session id, answer) of one question after ``messages``, as a chat app asks it."""
    if not stream:
        reply = client.chat.completions.create(model="plain", messages=messages, user=user)
        return reply.session_id, reply.choices[0].message.content
    chunks = list(client.chat.completions.create(model="plain", messages=messages, user=user,
                                                 stream=True))
    return chunks[-1].session_id, "".join(c.choices[0].delta.content or "" for c in chunks)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_one_users_conversations_are_separate_sessions_each_continued_by_its_history(
        client, engine, stream) -> None:
    user = f"person-{stream}"
    first, first_answer = asked(client, ASK, user, stream)
    second, second_answer = asked(client, OTHER, user, stream)
    assert first != second
    follow_up = {"role": "user", "content": "And then?"}
    again, _ = asked(client, [*ASK, {"role": "assistant", "content": first_answer},
                              follow_up], user, stream)
    other, _ = asked(client, [*OTHER, {"role": "assistant", "content": second_answer},
                              follow_up], user, stream)
    assert (again, other) == (first, second)
    turns = engine.log.conversation(first).turns
    assert [t.text for t in turns[::2]] == [ASK[0]["content"], "And then?"]
    assert engine.log.started_by(first) == f"api user={user}"  # whose conversation it is


def test_a_history_that_no_session_of_the_user_holds_starts_a_new_session(client,
                                                                          engine) -> None:
    session, answer = asked(client, ASK, "ana")
    history = [*ASK, {"role": "assistant", "content": answer},
               {"role": "user", "content": "And then?"}]
    assert asked(client, history, "ben")[0] != session  # another person's, though alike
    edited = [*ASK, {"role": "assistant", "content": answer + " (edited)"}, history[-1]]
    assert asked(client, edited, "ana")[0] != session
    assert len(engine.log.conversation(session).turns) == 2


def test_a_safety_identifier_names_the_user_as_user_does(client, engine) -> None:
    """OpenAI's newer name for the person: clients that follow it send it instead of user."""
    reply = client.chat.completions.create(model="plain", messages=ASK, safety_identifier="eve")
    assert engine.log.started_by(reply.session_id) == "api user=eve"
    both = client.chat.completions.create(model="plain", messages=ASK, user="fay",
                                          safety_identifier="hashed-fay")
    assert engine.log.started_by(both.session_id) == "api user=fay"


def test_open_webuis_user_header_names_the_user(client, engine) -> None:
    """Open WebUI sends no user, but its user's id in a header when told to
    (ENABLE_FORWARD_USER_INFO_HEADERS)."""
    reply = client.chat.completions.create(model="plain", messages=ASK,
                                           extra_headers={"X-OpenWebUI-User-Id": "owui-7"})
    assert engine.log.started_by(reply.session_id) == "api user=owui-7"


def test_the_user_is_kept_without_control_characters(client, engine) -> None:
    named = client.chat.completions.create(model="plain", messages=ASK, user="team\x00-7\x1b")
    assert engine.log.started_by(named.session_id) == "api user=team-7"
    blank = client.chat.completions.create(model="plain", messages=ASK, user="\x00\x07 ")
    assert engine.log.started_by(blank.session_id) == "api"


def test_an_x_session_id_still_names_the_session_whatever_the_messages(client,
                                                                      engine) -> None:
    for question in ("How do I index my documents?", "What is a variant?"):
        reply = client.chat.completions.create(
            model="plain", messages=[{"role": "user", "content": question}], user="cy",
            extra_headers={"X-Session-Id": "cy-chat-1"})
        assert reply.session_id == "cy-chat-1"
    assert len(engine.log.conversation("cy-chat-1").turns) == 4
    with pytest.raises(openai.ConflictError) as refused:  # begun for cy, not dee's to add to
        client.chat.completions.create(model="plain", messages=ASK, user="dee",
                                       extra_headers={"X-Session-Id": "cy-chat-1"})
    assert refused.value.body["message"] == (
        "the session 'cy-chat-1' was begun by another client or for another user; send an "
        "X-Session-Id of your own, or none for a new session")
