"""The Chat tab's attribution marks on a variant that reads no documents (``retrieval: false``:
a plain model, or a fine-tuned one that answers from its weights)."""

from chatbot.attribution import AttributionSettings, Attributor
from chatbot.engine import Engine
from chatbot.logs import ConversationLog
from app.ui.chat import ChatActions, new_state
from test_ui_chat import VARIANTS, drawn, passages, run


def test_an_answer_that_read_no_documents_is_not_judged_against_them(tmp_path, echo) -> None:
    """Such an answer was checked against no passages at all: every sentence was underlined
    as unsupported ('0% supported'), the Review tab listed each one for 'low support', and
    with attribution.policy withhold every answer of that variant was held back."""
    attributor = Attributor(None, AttributionSettings(policy="withhold", min_support=0.5))
    engine = Engine(VARIANTS, lambda model: echo, search=passages, attributor=attributor,
                    log=ConversationLog(tmp_path / "logs.sqlite"))
    actions, state = ChatActions(engine), new_state()
    question = "The weather in Lisbon is mild and sunny most of the year."
    chat, _, _, sources, _, _ = run(actions.respond(question, state, "plain"))[-1]
    assert drawn(chat)[-1]["content"] == question  # shown as written, not withheld or marked
    assert state.answers[0].reply.attribution is None and "supported" not in sources
    run(actions.respond(question, state, "prompt"))  # a variant that read passages: judged
    assert state.answers[1].reply.attribution.action == "withheld"
