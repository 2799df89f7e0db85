"""Arena and Dashboard tabs: their event functions on an echo engine with a real SQLite log."""

import random

import gradio as gr
import pytest

from chatbot.ab import AbStore
from chatbot.engine import Engine
from chatbot.generate import GenerationSettings
from chatbot.logs import ConversationLog
from app.ui.arena import CUT_OFF, WAITING, ArenaActions, build_arena_tab
from app.ui.dashboard import DashboardActions, build_dashboard_tab
from chatbot.variants import Variant


@pytest.fixture
def arena(tmp_path, echo):
    path = tmp_path / "logs.sqlite"
    variants = {"prompt": Variant("prompt", "base", "rag", retrieval=False),
                "finetuned": Variant("finetuned", "base", "plain", retrieval=False)}
    engine = Engine(variants, lambda model: echo, log=ConversationLog(path),
                    settings=GenerationSettings(max_new_tokens=20))
    return engine, AbStore(path)


def test_both_answers_stream_then_a_vote_reveals_the_names_once(arena, monkeypatch) -> None:
    engine, store = arena
    warnings = []
    monkeypatch.setattr(gr, "Warning", warnings.append)
    actions = ArenaActions(engine, store, rng=random.Random(1))
    steps = list(actions.ask("how do I sync", None))
    a, b, state, status, buttons = steps[-1]
    assert a == b == "how do I sync" and buttons["interactive"] is True
    assert all(step[4]["interactive"] is False for step in steps[:-1])  # no vote mid-answer
    battle = state.battle
    assert {battle.variant_a, battle.variant_b} == {"prompt", "finetuned"}
    assert battle.variant_a not in a and "prompt" not in status  # anonymous until the vote
    text, state, buttons = actions.vote("b", state)
    assert f"A was **{battle.variant_a}**, B was **{battle.variant_b}**" in text
    assert "Your vote: **B is better**" in text and buttons["interactive"] is False
    actions.vote("a", state)
    assert warnings == [f"{state.session_id} already voted on battle {battle.id}; "
                        "ask a new question for a new pair"]
    assert [(v.variant_b, v.choice) for v in store.votes()] == [(battle.variant_b, "b")]
    turns = store._db.execute("SELECT turn_a, turn_b FROM battles").fetchone()
    assert all(turns)  # both answers are logged turns


def test_a_variant_that_fails_keeps_the_other_answer_and_opens_no_vote(tmp_path, echo,
                                                                         monkeypatch) -> None:
    from chatbot.errors import ModelError

    monkeypatch.setattr(gr, "Warning", lambda message: None)

    def generators(model):
        if model == "gone":
            raise ModelError("model 'gone' can't be loaded")
        return echo

    path = tmp_path / "logs.sqlite"
    variants = {"prompt": Variant("prompt", "base", "rag", retrieval=False),
                "broken": Variant("broken", "gone", "plain", retrieval=False)}
    engine = Engine(variants, generators, log=ConversationLog(path))
    actions = ArenaActions(engine, AbStore(path), rng=random.Random(1))
    *_, (a, b, state, status, buttons) = actions.ask("how do I sync", None)
    assert sorted([a, b]) == ["**Not answered:** model 'gone' can't be loaded", "how do I sync"]
    assert "can't be voted on" in status and buttons["interactive"] is False
    text, _, _ = actions.vote("a", state)  # as a stranger would call the vote event
    assert text == WAITING and AbStore(path).votes() == []


def test_positions_are_randomized_across_battles(arena) -> None:
    engine, store = arena
    actions = ArenaActions(engine, store, rng=random.Random(3))
    lefts = {list(actions.ask(f"question {i}", None))[-1][2].battle.variant_a for i in range(12)}
    assert lefts == {"prompt", "finetuned"}


def test_dashboard_refresh_shows_the_report_and_chart(arena) -> None:
    engine, store = arena
    actions = ArenaActions(engine, store, rng=random.Random(0))
    state = list(actions.ask("q", None))[-1][2]
    actions.vote("tie", state)
    markdown, image = DashboardActions(store, list(engine.variants), bootstrap=50).refresh()
    assert "Arena (1 vote)" in markdown and "| 0 | 0 | 1 | 0 |" in markdown
    assert image.size[0] > 100


def test_with_no_votes_the_dashboard_says_how_to_get_them(arena) -> None:
    """It said 'no arena votes yet: open the Arena tab of `chatbot serve`', in `chatbot serve`'s
    own page, and not what to do in the tab."""
    engine, store = arena
    markdown, _ = DashboardActions(store, list(engine.variants), bootstrap=10).refresh()
    assert ("\n_No arena votes yet. To compare the variants, open the Arena tab, ask a "
            "question and vote for the better of the two answers; the results show here "
            "(press Refresh)._" in markdown)
    assert "chatbot serve" not in markdown


def test_tabs_build_inside_blocks(arena) -> None:
    engine, store = arena
    with gr.Blocks() as app:
        with gr.Tab("Arena"):
            arena_actions = build_arena_tab(engine, store)
        with gr.Tab("Dashboard"):
            dashboard = build_dashboard_tab(store, list(engine.variants))
    assert arena_actions.pairs == [("prompt", "finetuned")]
    assert dashboard.variants == ["prompt", "finetuned"] and app.fns


def test_server_adds_arena_dashboard_and_the_sticky_split_from_config(tmp_path, echo) -> None:
    from chatbot.config_file import load_config
    from app.server import ab_parts
    from app.ui import build_app

    path = tmp_path / "bot.yaml"
    path.write_text("variants: {prompt: {}, finetuned: {template: plain}}\n"
                    "ab: {enabled: true, weights: {prompt: 0, finetuned: 1},"
                    " arena_pairs: [[prompt, finetuned]]}\n")
    config = load_config(path)
    variants = {"prompt": Variant("prompt", "b", "rag", False),
                "finetuned": Variant("finetuned", "b", "plain", False)}
    engine = Engine(variants, lambda model: echo)
    assign, show_names, tabs = ab_parts(engine, config)
    app = build_app(engine, assign_variant=assign, show_variant_names=show_names, tabs=tabs)
    assert app.tab_actions["Arena"].pairs == [("prompt", "finetuned")]
    assert app.chat_actions.assign_variant("web-1") == "finetuned"
    assert app.chat_actions.show_variant_names is False
    assert app.tab_actions["Dashboard"].variants == ["prompt", "finetuned"]
    no_log = load_config(path)
    no_log.logging.enabled = False
    assert ab_parts(engine, no_log) == (None, True, [])


def test_with_the_split_off_the_dashboard_says_how_to_turn_it_on(tmp_path, echo) -> None:
    """With two variants and ab.enabled off the Dashboard showed the Arena, and under the
    thumbs table 'thumbs up/down in the Chat tab of sessions the split assigned are counted':
    no session ever is, and nothing said so."""
    from chatbot.config_file import load_config
    from app.server import ab_parts

    path = tmp_path / "bot.yaml"
    path.write_text("variants: {prompt: {}, finetuned: {template: plain}}\n")
    variants = {"prompt": Variant("prompt", "b", "rag", False),
                "finetuned": Variant("finetuned", "b", "plain", False)}
    engine = Engine(variants, lambda model: echo)
    _, _, tabs = ab_parts(engine, load_config(path))
    with gr.Blocks():
        dashboard = dict(tabs)["Dashboard"]()
    markdown, _ = dashboard.refresh()
    assert markdown.endswith(
        "\n_The A/B split is off (ab.enabled in the config), so no chat session is sent to a "
        "variant and no thumbs are compared here; turn it on and restart `chatbot serve` to "
        "compare the variants' thumbs-up rates._")


def test_with_no_weights_an_adapter_trained_since_gets_no_sessions(tmp_path, echo) -> None:
    """Empty ``ab.weights`` splits the variants the config declares; a registered adapter
    (a variant the engine found, not in the config) waits until someone names it."""
    from chatbot.config_file import load_config
    from app.server import ab_parts

    path = tmp_path / "bot.yaml"
    path.write_text("variants: {prompt: {}, plain: {template: plain}}\nab: {enabled: true}\n")
    variants = {name: Variant(name, "b", "rag", False) for name in ("prompt", "plain", "tuned")}
    assign, _, _ = ab_parts(Engine(variants, lambda model: echo), load_config(path))
    assert {assign(f"web-{i}") for i in range(60)} == {"prompt", "plain"}


def test_an_adapter_registered_since_joins_no_arena_or_report_until_named(tmp_path, echo) -> None:
    """The engine serves a registered adapter ("tuned"), but only the variants of the split
    are compared; the arena answers wait in the chat's queue of ``models.max_batch``."""
    from chatbot.config_file import load_config
    from app.server import ab_parts
    from app.ui import build_app

    path = tmp_path / "bot.yaml"
    path.write_text("models: {max_batch: 4}\nvariants: {prompt: {}, plain: {template: plain}}\n")
    variants = {name: Variant(name, "b", "rag", False) for name in ("prompt", "plain", "tuned")}
    engine = Engine(variants, lambda model: echo)
    _, _, tabs = ab_parts(engine, load_config(path))
    app = build_app(engine, tabs=tabs, answers_at_once=4)  # as the server builds it
    assert app.tab_actions["Arena"].pairs == [("prompt", "plain")]
    assert app.tab_actions["Dashboard"].variants == ["prompt", "plain"]
    ask = next(fn for fn in app.fns.values() if fn.name == "ask_events")
    chat = next(fn for fn in app.fns.values() if fn.name == "respond")
    assert (ask.concurrency_id, ask.concurrency_limit) == ("chat-answers", 4)
    assert (chat.concurrency_id, chat.concurrency_limit) == ("chat-answers", 4)


def test_a_vote_on_a_pair_erased_from_the_log_says_so_and_names_no_server_path(
        arena, monkeypatch) -> None:
    """`chatbot logs delete` erased the session while its Arena page stayed open: the vote
    was refused with 'no arena battle 1 in /srv/.../logs.sqlite', the server's own path."""
    from chatbot.log_erasure import erase_sessions

    engine, store = arena
    warnings = []
    monkeypatch.setattr(gr, "Warning", warnings.append)
    actions = ArenaActions(engine, store, rng=random.Random(1))
    state = list(actions.ask("how do I sync", None))[-1][2]
    assert erase_sessions(store.path, [state.session_id]).battles == 1
    actions.vote("a", state)
    assert warnings == ["This pair was erased from the conversation log (`chatbot logs delete`) "
                        "while the page showed it: the vote was not kept. Ask a new question "
                        "for a new pair."]
    assert store.votes() == []


def test_an_answer_cut_off_at_the_length_limit_says_so_before_the_vote(tmp_path, echo) -> None:
    """Both answers stopped mid-sentence at ``max_new_tokens`` ("how do I"), and nothing told
    the voter they were cut short rather than finished."""
    path = tmp_path / "logs.sqlite"
    variants = {"prompt": Variant("prompt", "base", "rag", retrieval=False),
                "finetuned": Variant("finetuned", "base", "plain", retrieval=False)}
    engine = Engine(variants, lambda model: echo, log=ConversationLog(path),
                    settings=GenerationSettings(max_new_tokens=3))
    actions = ArenaActions(engine, AbStore(path), rng=random.Random(1))
    a, b, _, status, buttons = list(actions.ask("how do I sync the folder", None))[-1]
    assert a == b == f"how do I\n\n{CUT_OFF}"
    assert buttons["interactive"] is True  # still a fair comparison: both had the same limit
    short = list(actions.ask("sync it", None))[-1]
    assert short[:2] == ("sync it", "sync it")
