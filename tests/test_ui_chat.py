"""The Chat tab's event functions on a real engine and SQLite log, without a server."""

import gradio as gr
import pytest

from app.build import build_engine
from chatbot.config_file import load_config
from chatbot.engine import Engine
from chatbot.generate import GenerationSettings
from chatbot.log_erasure import erase_sessions
from chatbot.logs import ConversationLog
from app.ui import build_app
from app.ui.chat import ChatActions, new_state
from app.ui.support import answer_markup
from chatbot.variants import Variant
from index.types import Chunk, Hit

VARIANTS = {"prompt": Variant("prompt", "base", "rag", True),
            "plain": Variant("plain", "base", "plain", False)}


def passages(query: str, k: int) -> list[Hit]:
    return [Hit(Chunk("c1", "docs/indexing.md", "Run <b>chatbot index sync</b> docs/.",
                      "Indexing > Sync", "h1"), 0.83, 1),
            Hit(Chunk("c2", "docs/chatting.md", "Open the web UI with chatbot serve.",
                      "Chatting", "h2"), 0.61, 2)][:k]


@pytest.fixture
def engine(echo, tmp_path) -> Engine:
    return Engine(VARIANTS, lambda model: echo, search=passages,
                  log=ConversationLog(tmp_path / "logs.sqlite"),
                  settings=GenerationSettings(max_new_tokens=40))


def run(events) -> list[tuple]:
    return list(events)


def drawn(update: dict) -> list[dict]:
    """The messages of a chat drawn whole (an answer's last step, a cleared chat)."""
    assert update["__type__"] == "update"
    return update["value"]


def like(index: int, liked) -> gr.LikeData:
    return gr.LikeData(None, {"index": index, "value": "", "liked": liked})


def test_answer_streams_and_its_citations_match_the_sources_panel(engine) -> None:
    actions, state = ChatActions(engine), new_state()
    steps = run(actions.respond("compare [1] with [2] and [7]", state, "prompt"))
    partial = [step[0][-1]["content"] for step in steps[1:-1]]
    assert len(partial) >= 3 and partial == sorted(partial, key=len)  # it grew piece by piece
    chat, state, _, sources, prompt, comment_row = steps[-1]
    messages = drawn(chat)
    assert steps[0][2] == "" and messages[0] == {"role": "user",
                                                 "content": "compare [1] with [2] and [7]"}
    reply = state.answers[0].reply
    assert messages[1]["content"] == reply.text == "compare [1] with [2] and [7]"
    assert 'id="src-1-1"' in sources and 'id="src-1-2"' in sources  # the page links [n] here
    assert sources.count("cited</span>") == 2 and "docs/indexing.md" in sources
    assert "Indexing &gt; Sync" in sources and "score 0.830" in sources
    assert "&lt;b&gt;chatbot index sync&lt;/b&gt;" in sources  # passage text is escaped
    assert prompt == [m.as_dict() for m in reply.messages] and prompt[0]["role"] == "system"
    turns = engine.log.conversation(state.session_id).turns
    assert [(t.role, t.status) for t in turns] == [("user", "complete"), ("assistant", "complete")]
    assert turns[1].id == reply.turn_id and len(turns[1].hits) == 2


def test_thumbs_and_comment_are_written_to_the_log(engine) -> None:
    actions, state = ChatActions(engine), new_state()
    run(actions.respond("first question", state, "prompt"))
    run(actions.respond("second question", state, "prompt"))
    state, row, thumbs = actions.rate(state, like(3, True))
    assert row["visible"] is True and thumbs["feedback_value"] == [None, "Like"]
    state, box, row = actions.comment(state, "  clear and short  ")
    assert box == "" and row["visible"] is False
    thumbs = actions.rate(state, like(1, False))[2]
    assert thumbs["feedback_value"] == ["Dislike", "Like"]  # both kept lit
    turns = engine.log.conversation(state.session_id).turns
    assert [(t.rating, t.comment) for t in turns if t.role == "assistant"] == [
        (-1, None), (1, "clear and short")]
    state, row, _ = actions.rate(state, like(3, ""))  # the thumb clicked again: taken back
    assert row == gr.update() and state.rated[1] == -1  # answer 1's comment box stays open
    state, row, thumbs = actions.rate(state, like(1, ""))
    assert row["visible"] is False and state.rated is None  # its own rating gone: so is it
    assert thumbs["feedback_value"] == [None, None]
    turns = engine.log.conversation(state.session_id).turns
    assert [(t.rating, t.comment) for t in turns if t.role == "assistant"] == [(None, None),
                                                                             (None, None)]


def test_a_comment_too_long_to_keep_is_refused_in_words_and_left_in_the_box(engine) -> None:
    """The log's refusal was no ``gr.Error``: the page said nothing and the server printed a
    traceback, so the comment looked saved."""
    from chatbot.logs import MAX_NOTE_CHARS

    actions, state = ChatActions(engine), new_state()
    run(actions.respond("first question", state, "prompt"))
    state = actions.rate(state, like(1, False))[0]
    long = "y" * (MAX_NOTE_CHARS + 1)
    with pytest.warns(UserWarning, match="20,001 characters; at most 20,000 are kept"):
        state, kept, row = actions.comment(state, long)
    assert kept == long and row == {"__type__": "update"}  # the box stays open to shorten it
    state, kept, row = actions.comment(state, "too vague")
    assert kept == "" and row["visible"] is False
    turns = engine.log.conversation(state.session_id).turns
    assert [(t.rating, t.comment) for t in turns if t.role == "assistant"] == [(-1, "too vague")]


def test_a_comment_typed_after_the_next_question_is_not_saved_on_the_earlier_answer(
        engine) -> None:
    """The box opened for answer 1; typed after answer 2 came, it reads as about answer 2."""
    actions, state = ChatActions(engine), new_state()
    run(actions.respond("first question", state, "prompt"))
    state, row, _ = actions.rate(state, like(1, True))
    assert row["visible"] is True
    steps = run(actions.respond("second question", state, "prompt"))
    assert steps[0][5]["visible"] is False  # the box closes as the question is sent
    with pytest.warns(UserWarning, match="Rate an answer with thumbs up or down first"):
        state, kept, row = actions.comment(state, "this one is made up")
    assert kept == "this one is made up" and row["visible"] is False
    turns = engine.log.conversation(state.session_id).turns
    assert [(t.rating, t.comment) for t in turns if t.role == "assistant"] == [(1, None),
                                                                             (None, None)]


UNCHANGED = {"__type__": "update"}
"""An output the page leaves as it is."""


def test_the_next_question_typed_while_an_answer_streams_stays_in_the_message_box(
        engine) -> None:
    """The box is emptied once, as the question is sent; the steps of the answer, and a
    regenerated answer, leave what was typed since in place."""
    actions, state = ChatActions(engine), new_state()
    steps = run(actions.respond("first question here", state, "prompt"))
    assert steps[0][2] == "" and len(steps) > 3
    assert all(step[2] == UNCHANGED for step in steps[1:])
    assert all(step[2] == UNCHANGED for step in run(actions.regenerate(state, "prompt")))
    assert run(actions.regenerate(new_state(), "prompt"))[0][2] == UNCHANGED  # nothing to redo


def test_a_question_sent_while_the_page_waits_for_an_answer_is_refused_and_kept(engine
                                                                                 ) -> None:
    """The Send button still works while Enter's answer streams: two answers written into one
    conversation at once left the page with the second in place of the first."""
    actions, state = ChatActions(engine), new_state()
    first = actions.respond("first question here", state, "prompt")
    next(first), next(first)  # the answer is on its way
    with pytest.warns(UserWarning, match="still answering your last question"):
        refused = run(actions.respond("second question", state, "prompt"))
    assert [step[2] for step in refused] == ["second question"]  # left in the box
    with pytest.warns(UserWarning, match="still answering your last question"):
        run(actions.regenerate(state, "prompt"))
    run(first)
    assert [answer.question for answer in state.answers] == ["first question here"]
    run(actions.respond("second question", state, "prompt"))  # once the answer is in
    assert [answer.question for answer in state.answers] == ["first question here",
                                                            "second question"]
    turns = engine.log.conversation(state.session_id).turns
    assert [t.text for t in turns if t.role == "user"] == ["first question here",
                                                          "second question"]


def test_bad_input_warns_and_the_next_question_is_answered(engine) -> None:
    actions, state = ChatActions(engine), new_state()
    with pytest.warns(UserWarning, match="the message is empty"):
        steps = run(actions.respond("   ", state, "prompt"))
    assert steps[-1][0] == [] and steps[-1][2] == "   "  # message kept for editing
    with pytest.warns(UserWarning, match="unknown variant 'nope'"):
        run(actions.respond("hello", state, "nope"))
    with pytest.warns(UserWarning, match="the limit is 8,000"):
        run(actions.respond("x" * 9000, state, "prompt"))
    messages = drawn(run(actions.respond("hello again", state, "prompt"))[-1][0])
    assert [m["role"] for m in messages] == ["user", "assistant"]


def test_regenerate_replaces_the_last_answer_and_keeps_the_earlier_ones(engine, echo) -> None:
    actions, state = ChatActions(engine), new_state()
    run(actions.respond("one two", state, "prompt"))
    run(actions.respond("three four", state, "prompt"))
    actions.rate(state, like(1, True))
    actions.rate(state, like(3, False))
    chat = run(actions.regenerate(state, "plain"))[-1][0]
    assert chat["feedback_value"] == ["Like", None]  # the new answer is not rated yet
    messages = drawn(chat)
    assert [m["content"] for m in messages if m["role"] == "user"] == ["one two", "three four"]
    assert [a.reply.variant for a in state.answers] == ["prompt", "plain"]
    sent = [m.content for m in echo.calls[-1][0]]
    assert sent.count("three four") == 1 and "one two" in sent  # history without the old answer
    logged = [t for t in engine.log.conversation(state.session_id).turns if t.role == "assistant"]
    assert len(logged) == 3  # the replaced answer stays in the log


def test_clear_starts_a_new_session(engine) -> None:
    actions, state = ChatActions(engine), new_state()
    run(actions.respond("hello", state, "prompt"))
    actions.rate(state, like(1, True))
    chat, fresh, *_ = actions.clear(state)
    assert drawn(chat) == [] and chat["feedback_value"] == []  # no thumb stays lit
    assert fresh.answers == [] and fresh.session_id != state.session_id
    run(actions.respond("again", fresh, "prompt"))
    assert {s["id"] for s in engine.log.sessions()} == {state.session_id, fresh.session_id}


def test_sessions_do_not_share_history(engine, echo) -> None:
    actions, alice, bob = ChatActions(engine), new_state(), new_state()
    run(actions.respond("alice secret words", alice, "plain"))
    run(actions.respond("bob question", bob, "plain"))
    assert all("alice" not in m.content for m in echo.calls[-1][0])


def test_assigned_variant_wins_and_names_can_be_hidden(engine) -> None:
    actions = ChatActions(engine, assign_variant=lambda session: "plain", show_variant_names=False)
    state = new_state()
    sources = run(actions.respond("hello", state, "prompt"))[-1][3]
    assert state.answers[0].reply.variant == "plain" and "plain" not in sources


def test_selecting_an_earlier_answer_shows_its_sources(engine) -> None:
    actions, state = ChatActions(engine), new_state()
    run(actions.respond("with sources", state, "prompt"))
    run(actions.respond("without sources", state, "plain"))
    sources, prompt = actions.select(state, gr.SelectData(None, {"index": 1, "value": ""}))
    assert 'id="src-1-1"' in sources and "Answer 1" in sources
    latest, _ = actions.panel(state)
    assert "No passages were used" in latest and "Answer 2" in latest


@pytest.mark.parametrize("index", ["1", [], ["1"], None, -1, True, 99])
def test_event_data_no_browser_sends_changes_nothing(engine, index) -> None:
    """The Gradio API takes any event data from a stranger: an index that names no answer,
    or a rating that is neither up nor down, is ignored, not an error or a thumbs-down."""
    actions, state = ChatActions(engine), new_state()
    run(actions.respond("a question", state, "prompt"))
    assert actions.rate(state, like(index, True))[1] == gr.update()
    assert actions.rate(state, like(1, "weird"))[1] == gr.update()
    assert actions.select(state, gr.SelectData(None, {"index": index, "value": ""})) == (
        gr.update(), gr.update())
    assert engine.log._db.execute("SELECT COUNT(*) FROM feedback").fetchone()[0] == 0


def test_chat_events_a_stranger_calls_without_a_browsers_event_data_change_nothing(
        engine, tmp_path) -> None:
    """``/rate``, ``/select`` and ``/correct`` are Gradio API endpoints anyone can call, with
    event data missing or cut short (``/gradio_api/call`` sends none): nothing is rated or
    corrected, and no Python error text (``'NoneType' object is not subscriptable``) is sent."""
    import json

    from fastapi.testclient import TestClient

    from app.server import create_server_app

    config = tmp_path / "bot.yaml"
    config.write_text('models:\n  embedder: "hash:64"\n')
    session = "stranger-1"
    with TestClient(create_server_app(engine, load_config(config))) as client:
        fns = {d["api_name"]: d["id"] for d in client.get("/config").json()["dependencies"]}

        def joined(name: str, data: list, event_data) -> dict:
            """The finished event of ``name`` called as a page calls it, in ``session``."""
            sent = client.post("/gradio_api/queue/join", json={
                "data": data, "fn_index": fns[name], "session_hash": session,
                "event_data": event_data, "trigger_id": None})
            assert sent.status_code == 200, sent.text
            with client.stream("GET", f"/gradio_api/queue/data?session_hash={session}") as events:
                messages = [json.loads(line[5:]) for line in events.iter_lines()
                            if line.startswith("data:")]  # it ends with the session's events
            return next(m for m in messages if m.get("msg") == "process_completed")

        assert joined("respond", ["a question", None, "prompt"], None)["success"]
        for event_data in (None, {}, {"index": 1}):  # no rating, no text
            for name in ("rate", "select", "correct"):
                done = joined(name, [None], event_data)
                assert done["success"], (name, event_data, done["output"])
        for name in ("rate", "select", "correct"):
            called = client.post(f"/gradio_api/call/{name}", json={"data": []})
            events = client.get(f"/gradio_api/call/{name}/{called.json()['event_id']}").text
            assert "event: complete" in events and "event: error" not in events, events
        db = engine.log._db
        assert db.execute("SELECT COUNT(*) FROM feedback").fetchone()[0] == 0
        assert db.execute("SELECT COUNT(*) FROM corrections").fetchone()[0] == 0
        # the page's own event data still rates: a thumbs-down on the answer
        assert joined("rate", [None], {"index": 1, "value": "", "liked": False})["success"]
        assert db.execute("SELECT rating FROM feedback").fetchall()[0][0] == -1


def test_app_builds_with_its_controls(engine) -> None:
    app = build_app(engine, title="Support bot")
    ids = {block.elem_id for block in app.blocks.values()}
    assert {"cb-chat", "cb-message", "cb-send", "cb-sources", "cb-prompt", "cb-variant",
            "cb-regenerate", "cb-clear", "cb-comment"} <= ids
    assert app.title == "Support bot"
    names = {fn.name for fn in app.fns.values()}
    assert {"respond", "regenerate", "clear", "rate", "comment", "select"} <= names


def test_clear_stops_an_answer_in_progress(engine) -> None:
    """Else the answer streaming on writes the old conversation back over the cleared one."""
    app = build_app(engine)
    answering = {index for index, fn in app.fns.items() if fn.name in ("respond", "regenerate")}
    dependencies = app.config["dependencies"]
    clear_triggers = sorted(map(tuple, (target for dependency in dependencies
                                        if app.fns[dependency["id"]].name == "clear"
                                        for target in dependency["targets"])))
    cancelling = sorted(map(tuple, (target for dependency in dependencies
                                    if set(dependency["cancels"]) == answering
                                    for target in dependency["targets"])))
    assert len(answering) == 4 and len(clear_triggers) == 2  # the button and the chat's own
    assert cancelling == clear_triggers


def test_tiny_model_answers_through_the_chat_tab(tiny_config) -> None:
    engine = build_engine(load_config(tiny_config))
    actions, state = ChatActions(engine), new_state()
    steps = run(actions.respond("How do I index my documents?", state, None))
    reply = state.answers[0].reply
    assert reply.attribution is not None and reply.variant == "prompt"  # on by default
    shown = drawn(steps[-1][0])[-1]["content"]
    assert shown == answer_markup(reply.text, reply.attribution, "src-1")
    assert engine.log.conversation(state.session_id).turns[1].text == reply.text


def test_feedback_on_an_answer_erased_from_the_log_says_it_was_not_kept(engine) -> None:
    """A page open through `chatbot logs delete`: a thumb, comment or correction finds no turn."""
    actions, state = ChatActions(engine), new_state()
    run(actions.respond("first question", state, "prompt"))
    state = actions.rate(state, like(1, True))[0]
    assert erase_sessions(engine.log.path, [state.session_id]).ratings == 1
    edit = gr.EditData(None, {"index": 1, "previous_value": "", "value": "Fixed."})
    for act in (lambda: actions.comment(state, "clear"), lambda: actions.correct(state, edit, None),
                lambda: actions.rate(state, like(1, False))):
        with pytest.warns(UserWarning, match="was erased from the conversation log"):
            act()
    assert state.answers[0].feedback is None and state.rated is None  # no thumb left lit
