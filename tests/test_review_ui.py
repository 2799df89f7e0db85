"""Correcting answers in the web UI: the chat's edit action and the Review tab, on a real
engine and SQLite log; and who may reach them (and ``POST /v1/corrections``) over HTTP."""

from __future__ import annotations

import json

import gradio as gr
import pytest
from fastapi.testclient import TestClient

from app.server import create_server_app
from app.ui.chat import ChatActions, new_state
from app.ui.review import ReviewActions
from app.ui.support import answer_markup, plain_answer
from chatbot.attribution import Attribution, SentenceSupport, Support
from chatbot.config_file import load_config
from chatbot.engine import Engine
from chatbot.errors import InputError
from chatbot.logs import ConversationLog
from chatbot.variants import Variant
from log_support import log_exchanges

VARIANTS = {"prompt": Variant("prompt", "base", "rag", True)}
FIXED = "Run `chatbot index remove PATH` to drop one document."


@pytest.fixture
def engine(echo, tmp_path) -> Engine:
    return Engine(VARIANTS, lambda model: echo, log=ConversationLog(tmp_path / "logs.sqlite"))


def edited(index: int, value: str) -> gr.EditData:
    return gr.EditData(None, {"index": index, "previous_value": "", "value": value})


def test_editing_an_answer_saves_a_correction_and_keeps_the_original(engine) -> None:
    actions, state = ChatActions(engine), new_state()
    state = list(actions.respond("how do I remove a document", state, "prompt"))[-1][1]
    messages, state = actions.correct(state, edited(1, FIXED), gr.Request(username="ana"))
    assert messages[1]["content"] == FIXED and state.history()[1].content == FIXED
    turn = engine.log.conversation(state.session_id).turns[1]
    assert (turn.text, turn.correction) == ("how do I remove a document", FIXED)
    assert engine.log.corrections(turn.id)[0].author == "ana"


def test_a_question_cannot_be_edited_into_a_correction(engine) -> None:
    actions, state = ChatActions(engine), new_state()
    state = list(actions.respond("how do I remove a document", state, "prompt"))[-1][1]
    messages, state = actions.correct(state, edited(0, "another question"), gr.Request())
    assert messages[0]["content"] == "how do I remove a document"
    assert engine.log.corrections(state.answers[0].reply.turn_id) == []


def test_the_edited_markup_of_an_attributed_answer_is_saved_as_plain_text() -> None:
    text = "Run the sync command now. It invents a flag for you."
    attribution = Attribution((
        SentenceSupport(0, 25, 0.9, True, (Support(1, 0, 20, 0.9),)),
        SentenceSupport(26, 52, 0.1, True)), 0.45, "flagged", "lexical")
    assert plain_answer(answer_markup(text, attribution, "src-1")) == text


@pytest.fixture
def queue(tmp_path) -> ReviewActions:
    log = ConversationLog(tmp_path / "logs.sqlite")
    log_exchanges(log, "s1", [("How do I sync?", "Run sync.", 1),
                              ("How do I remove a document?", "Delete the disk.", -1)],
                  comment="Wrong command")
    log_exchanges(log, "s2", [("Which port?", "Port 80.", None)],
                  attribution={"score": 0.2, "action": "shown", "sentences": []})
    log_exchanges(log, "s3", [("Is there an API?", "Yes, at /v1.", None)],
                  attribution={"score": 0.9, "action": "shown", "sentences": []})
    return ReviewActions(log, min_support=0.5)


def test_review_lists_thumbed_down_and_weakly_supported_answers(queue) -> None:
    rows, picker, heading, answer, sources, prompt, correction, shown = queue.refresh()
    assert [row[:3] for row in rows] == [[6, "low support", "Which port?"],
                                         [4, "thumbs down", "How do I remove a document?"]]
    assert picker["value"] == shown == 6 and answer == correction == "Port 80."
    assert "support score 20%" in heading and prompt[-1]["role"] == "user"
    heading = queue.show(4)[0]
    assert "**Comment:** Wrong command" in heading


def test_a_withheld_answer_is_reviewed_as_the_model_wrote_it(tmp_path) -> None:
    """The user saw the withheld message; the reviewer judges, and corrects, the real text."""
    log = ConversationLog(tmp_path / "logs.sqlite")
    turn = log_exchanges(log, "s1", [("Which port?", "This answer was withheld.", None)],
                         attribution={"score": 0.1, "action": "withheld", "sentences": [],
                                      "withheld_text": "Port 80, always."})[0]
    heading, answer, _, _, correction = ReviewActions(log, min_support=0.5).show(turn)
    assert answer == correction == "Port 80, always."
    with pytest.raises(InputError, match="is the same as the answer"):  # the text it corrects
        log.add_correction(turn, correction)
    assert "**The user was shown:** This answer was withheld\\." in heading  # as text


def test_what_a_user_wrote_is_shown_as_text_never_as_html_or_images(tmp_path) -> None:
    """A question or comment could make the reviewer's browser load any URL."""
    from markdown_it import MarkdownIt

    log = ConversationLog(tmp_path / "logs.sqlite")
    question = 'Hi <img src="http://127.0.0.1:9/t.png"> ![pix](http://127.0.0.1:9/m.png) *x*'
    turn = log_exchanges(log, "s1", [(question, "Hello.", -1)], comment="<b>bold</b> [a](b)")[0]
    heading = ReviewActions(log, min_support=0.5).show(turn)[0]
    shown = MarkdownIt("commonmark", {"html": True}).render(heading)
    assert "<img" not in shown and "<b>" not in shown and "<a " not in shown
    assert "<em>" not in shown.split("Why it is listed")[0]
    assert ("&lt;img src=&quot;http://127.0.0.1:9/t.png&quot;&gt; "
            "![pix](http://127.0.0.1:9/m.png)") in shown
    assert "&lt;b&gt;bold&lt;/b&gt; [a](b)" in shown


def test_a_correction_or_an_approval_takes_an_answer_off_the_list(queue) -> None:
    rows = queue.correct(4, FIXED, gr.Request(username="ana"))[0]
    assert [row[0] for row in rows] == [6]
    rows = queue.approve(6, gr.Request(username="bo"))[0]
    assert rows == []
    assert queue.log.conversation("s1").turns[3].correction == FIXED
    assert queue.log.conversation("s2").turns[1].approved


@pytest.fixture
def warnings(monkeypatch) -> list[str]:
    shown = []
    monkeypatch.setattr(gr, "Warning", shown.append)
    return shown


def test_picking_the_answer_on_show_again_keeps_the_correction_being_typed(queue) -> None:
    """The picker sends its value again whenever it loses focus, not only on a new pick."""
    assert queue.pick(6, 6) == gr.skip()  # no output changes: the typed text stays
    heading, answer, _, _, correction, shown = queue.pick(4, 6)
    assert "How do I remove a document?" in heading and answer == correction == "Delete the disk."
    assert shown == 4


def test_saving_the_answer_unedited_is_refused_and_stores_no_correction(queue, warnings) -> None:
    """An unedited answer saved as its own correction would train on it as if fixed."""
    written = queue.show(4)[1]
    kept = queue.correct(4, f"  {written}\n", gr.Request(username="ana"))
    assert warnings == ["the correction of turn 4 is the same as the answer; edit it, or "
                        "approve the answer as it is (Approve in the Review tab)"]
    assert kept == gr.skip()  # the editor stays as it is
    assert queue.log.corrections(4) == [] and 4 in [row[0] for row in queue.refresh()[0]]


def test_of_two_reviewers_of_one_answer_the_first_is_kept_and_the_second_told(
        queue, warnings) -> None:
    other = ReviewActions(ConversationLog(queue.log.path), min_support=0.5)
    assert queue.refresh()[1]["value"] == other.refresh()[1]["value"] == 6
    rows = queue.correct(6, "Port 8080.", gr.Request(username="ana"))[0]
    assert [row[0] for row in rows] == [4]
    kept = other.correct(6, "Port 443.", gr.Request(username="bo"))
    assert warnings == ["turn 6 was corrected by someone else since you opened it; theirs is "
                        "kept: Refresh to see the list as it is now"]
    assert kept == gr.skip()  # bo's text stays in the box
    assert [(c.text, c.author) for c in queue.log.corrections(6)] == [("Port 8080.", "ana")]
    other.approve(6, gr.Request(username="bo"))
    assert "turn 6 was corrected by someone else" in warnings[-1]
    assert not queue.log.conversation("s2").turns[1].approved


def test_going_back_to_the_review_tab_keeps_the_correction_being_typed(engine) -> None:
    """Opening the tab again lists what changed meanwhile (a thumbs-down in the chat), and
    leaves the open answer and its correction, typed and not saved yet, as they are."""
    from app.ui import build_app

    first = log_exchanges(engine.log, "s1", [("Which port?", "Port 80.", -1)])[0]
    app = build_app(engine)
    tab = next(block for block in app.blocks.values()
               if isinstance(block, gr.Tab) and block.label == "Review")
    opened = next(event for event in app.fns.values() if (tab._id, "select") in event.targets)
    table, picker, heading = opened.outputs  # the correction box is not written
    assert picker.elem_id == "cb-review-pick"
    later = log_exchanges(engine.log, "s2", [("Which host?", "localhost.", -1)])[0]
    engine.log.approve(first, "bo")
    rows, choices, shown = opened.fn(first)
    assert [row[0] for row in rows] == [later] and shown == gr.update()
    assert choices["choices"][-1] == (f"turn {first}: no longer waiting for review", first)
    assert "value" not in choices and "Pick an answer" in opened.fn(None)[2]  # none open


def test_the_review_tab_opened_as_the_page_loads_keeps_the_listed_answers_question(
        engine) -> None:
    """A click on the tab before the page's list came sent an empty picker, and the question
    the list then showed was replaced by "Pick an answer" with that answer still open."""
    from app.ui import build_app

    first = log_exchanges(engine.log, "s1", [("Which port?", "Port 80.", -1)])[0]
    app = build_app(engine)
    tab = next(block for block in app.blocks.values()
               if isinstance(block, gr.Tab) and block.label == "Review")
    opened = next(event for event in app.fns.values() if (tab._id, "select") in event.targets)
    listed = next(event for event in app.fns.values()
                  if event.fn == app.review_actions.refresh and event.targets[0][1] == "load")
    # what the server has on show, not the picker's value as the page last had it
    assert [type(block) for block in opened.inputs] == [gr.State]
    assert listed.concurrency_id == opened.concurrency_id  # the list comes first
    shown = listed.fn()[-1]
    assert shown == first and opened.fn(shown)[2] == gr.update()


@pytest.fixture
def protected(tmp_path, echo, monkeypatch):
    monkeypatch.setenv("CHATBOT_API_KEY", "k-1")
    return server_over_one_answer(tmp_path, echo, monkeypatch)


def server_over_one_answer(tmp_path, echo, monkeypatch):
    """The server app, the turn id of its log's one thumbed-down answer, and the log."""
    monkeypatch.setenv("CHATBOT_DATA_DIR", str(tmp_path / "data"))
    config_file = tmp_path / "bot.yaml"
    config_file.write_text('name: Support bot\nmodels:\n  embedder: "hash:64"\n')
    log = ConversationLog(tmp_path / "data" / "logs.sqlite")
    turn = log_exchanges(log, "s1", [("How do I remove a document?", "Delete it.", -1)])[0]
    engine = Engine(VARIANTS, lambda model: echo, log=log)
    return create_server_app(engine, load_config(config_file)), turn, log


def test_corrections_over_http_need_the_same_credential_as_every_route(protected) -> None:
    app, turn, _ = protected
    body = {"turn_id": turn, "text": FIXED}
    with TestClient(app) as client:
        endpoints = client.get("/gradio_api/info", headers={"Authorization": "Bearer k-1"})
        writes = {"/correct", "/review_correct", "/review_approve"}
        assert writes <= set(endpoints.json()["named_endpoints"])
        for path in [f"/gradio_api/call{name}" for name in writes] + ["/v1/corrections"]:
            assert client.post(path, json={"data": [], **body}).status_code == 401, path
        saved = client.post("/v1/corrections", json=body, headers={"Authorization": "Bearer k-1"})
        assert saved.status_code == 201 and saved.json()["author"] == "api-key"
        unknown = client.post("/v1/corrections", json={"turn_id": 99, "text": FIXED},
                              headers={"Authorization": "Bearer k-1"})
        message = unknown.json()["error"]["message"]
        assert unknown.status_code == 400 and message.startswith("no turn 99 in the conversation ")
        assert "logs.sqlite" not in message  # the server's paths are not a stranger's business
        as_text = client.post("/v1/corrections", json={"turn_id": str(turn), "text": FIXED},
                              headers={"Authorization": "Bearer k-1"})
        assert as_text.json()["error"]["message"].startswith(
            f'turn_id must be a whole number (as `chatbot logs show` lists them), not "{turn}"')


def test_a_correction_posted_to_an_open_server_is_signed_api(tmp_path, echo,
                                                             monkeypatch) -> None:
    for name in ("CHATBOT_API_KEY", "CHATBOT_USER", "CHATBOT_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    app, turn, log = server_over_one_answer(tmp_path, echo, monkeypatch)
    with TestClient(app) as client:
        saved = client.post("/v1/corrections", json={"turn_id": turn, "text": FIXED})
    assert saved.status_code == 201 and saved.json()["author"] == "api"
    assert [c.author for c in log.corrections(turn)] == ["api"]


def test_a_logged_in_browser_cannot_be_made_to_post_a_correction_from_another_site(
        protected) -> None:
    """A page elsewhere can make a logged-in user's browser send a form or plain text with the
    login cookie (cross-site request forgery), but not JSON: only JSON is read."""
    app, turn, log = protected
    body = json.dumps({"turn_id": turn, "text": "Written by another site."})
    with TestClient(app) as client:
        assert client.post("/login", data={"username": "x", "password": "k-1"}).status_code == 200
        for kind in ("text/plain", "application/x-www-form-urlencoded", None):
            headers = {"Origin": "https://elsewhere.example"}
            headers |= {"Content-Type": kind} if kind else {}
            refused = client.post("/v1/corrections", content=body, headers=headers)
            assert refused.status_code == 415, kind
            assert "Content-Type: application/json" in refused.json()["error"]["message"]
        assert log.corrections(turn) == []
        as_json = client.post("/v1/corrections", content=body,
                              headers={"Content-Type": "application/json"})
        assert as_json.status_code == 201 and as_json.json()["author"] == "x"  # the same cookie


def test_one_caller_cannot_continue_a_session_another_began(protected) -> None:
    app, _, log = protected
    ask = {"model": "prompt", "messages": [{"role": "user", "content": "How do I sync?"}]}
    with TestClient(app) as client:
        assert client.post("/login", data={"username": "ana", "password": "k-1"}).status_code == 200
        began = client.post("/v1/chat/completions", json=ask, headers={"X-Session-Id": "ana-1"})
        assert began.status_code == 200
        assert client.post("/v1/chat/completions", json=ask,
                           headers={"X-Session-Id": "ana-1"}).status_code == 200
    with TestClient(app) as other:
        taken = other.post("/v1/chat/completions", json=ask, headers={
            "X-Session-Id": "ana-1", "Authorization": "Bearer k-1"})
        assert taken.status_code == 409 and taken.json()["error"]["code"] == "session_not_yours"
    assert len(log.conversation("ana-1").turns) == 4
