"""The Chat tab on an answer that reached the length limit (``generation.max_new_tokens``)."""

from chatbot.engine import Engine
from chatbot.generate import GenerationSettings
from chatbot.logs import ConversationLog
from chatbot.variants import Variant
from app.ui.chat import ChatActions, new_state


def test_an_answer_cut_off_at_the_length_limit_says_so_beside_it(tmp_path, echo) -> None:
    """The answer stopped mid-sentence ("how do I") and nothing told the reader it was cut
    short rather than finished (the Arena says so; the chat did not)."""
    engine = Engine({"plain": Variant("plain", "base", "plain", False)}, lambda model: echo,
                    log=ConversationLog(tmp_path / "logs.sqlite"),
                    settings=GenerationSettings(max_new_tokens=3))
    actions, state = ChatActions(engine), new_state()
    cut = list(actions.respond("how do I sync the folder", state))[-1][3]
    assert state.answers[0].reply.text == "how do I"
    assert ("This answer was cut off at the length limit (generation.max_new_tokens): ask "
            "for the rest, or ask a narrower question.") in cut
    finished = list(actions.respond("sync it", state))[-1][3]
    assert "cut off" not in finished
