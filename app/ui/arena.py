"""The Arena tab: one question, two anonymous answers from two variants side by side (positions
drawn at random and logged), a vote (A better, B better, tie, both bad), then the names.

Each battle is a row of the ``battles`` table and each vote a row of ``votes`` with one vote
per voter and battle (a UNIQUE constraint), so results survive a restart. Run it with
``chatbot serve``; the report is ``chatbot ab report`` or the Dashboard tab.
"""

from __future__ import annotations

import html
import random
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import gradio as gr

from chatbot.ab import AbStore, Battle, arena_pairs, draw_pair
from chatbot.engine import Engine
from chatbot.errors import ChatbotError, InputError, NotInLog
from app.ui.chat import answer_queue
from app.ui.render import error_text

CHOICE_LABELS = {"a": "A is better", "b": "B is better", "tie": "Tie", "both_bad": "Both are bad"}
WAITING = "_Ask a question: two anonymous variants answer it._"
CUT_OFF = "_(cut off: this answer reached the length limit, `generation.max_new_tokens`)_"
ERASED = ("This pair was erased from the conversation log (`chatbot logs delete`) while the page "
          "showed it: the vote was not kept. Ask a new question for a new pair.")


@dataclass
class ArenaState:
    """One browser session: its id (the voter when there is no login) and the open battle."""

    session_id: str
    battle: Battle | None = None  # the battle open to a vote: both answers given


def new_state() -> ArenaState:
    return ArenaState(f"arena-{uuid.uuid4().hex[:12]}")


class ArenaActions:
    """The tab's event functions, callable without a server (tests call them directly)."""

    def __init__(self, engine: Engine, store: AbStore,
                 pairs: Sequence[Sequence[str]] = (), rng: random.Random | None = None) -> None:
        self.engine = engine
        self.store = store
        self.pairs = arena_pairs(list(engine.variants), pairs)  # the pairs given, else all
        self.rng = rng or random.Random()

    def ask(self, question: str, state: ArenaState | None) -> Iterator[tuple]:
        """Yield (answer A, answer B, state, reveal text, vote buttons' update) as both
        answers stream; A is answered first, then B (one model serves both)."""
        state = state or new_state()
        try:
            question = self.engine.check_message(question or "")
        except InputError as exc:
            gr.Warning(error_text(exc))
            yield "", "", state, WAITING, gr.update(interactive=False)
            return
        left, right = draw_pair(self.pairs, self.rng)
        battle = self.store.start_battle(state.session_id, question, left, right)
        state.battle = None  # votable once both answers are in
        texts, turns = ["", ""], [None, None]
        locked = gr.update(interactive=False)
        for side, variant in enumerate((left, right)):
            session = f"{state.session_id}-{battle.id}-{'ab'[side]}"
            try:  # a closed tab closes this generator: leaving ``with`` stops the answer
                with self.engine.answer(session, question, variant, history=[]) as stream:
                    for piece in stream:
                        texts[side] += piece
                        yield texts[0], texts[1], state, "_Answering..._", locked
            except ChatbotError as exc:  # the other side still answers; the pair gets no vote
                texts[side] = f"**Not answered:** {error_text(exc)}"
                continue
            texts[side] = stream.reply.text
            if stream.reply.reached_token_limit:  # a voter would take it for a finished answer
                texts[side] += f"\n\n{CUT_OFF}"
            turns[side] = stream.reply.turn_id
        self.store.record_turns(battle.id, *turns)
        if None in turns:
            yield (*texts, state, "_An answer failed, so this pair can't be voted on. "
                   "Ask again for a new pair._", locked)
            return
        state.battle = battle
        yield texts[0], texts[1], state, "_Which answer is better?_", gr.update(interactive=True)

    def vote(self, choice: str, state: ArenaState | None,
             request: gr.Request | None = None) -> tuple:
        """Record the vote and reveal the names; (reveal text, state, vote buttons' update)."""
        if state is None or state.battle is None:
            gr.Warning("Ask a question first, then vote.")
            return WAITING, state, gr.update(interactive=False)
        voter = (getattr(request, "username", None) or state.session_id)
        try:
            battle = self.store.vote(state.battle.id, voter, choice)
        except NotInLog:  # its words name the log file: the server's layout
            gr.Warning(ERASED)
            return reveal(state.battle, None), state, gr.update(interactive=False)
        except InputError as exc:
            gr.Warning(error_text(exc))
            return reveal(state.battle, None), state, gr.update(interactive=False)
        return reveal(battle, choice), state, gr.update(interactive=False)


def reveal(battle: Battle, choice: str | None) -> str:
    said = f"Your vote: **{CHOICE_LABELS[choice]}**. " if choice else ""
    return (f"{said}A was **{html.escape(battle.variant_a)}**, "
            f"B was **{html.escape(battle.variant_b)}**. Ask another question for a new pair.")


def build_arena_tab(engine: Engine, store: AbStore, pairs: Sequence[Sequence[str]] = (),
                    answers_at_once: int = 1) -> ArenaActions:
    """Lay out the Arena tab inside the current ``gr.Blocks`` and wire its events; its answers
    wait in the chat's queue (``answers_at_once`` together)."""
    actions = ArenaActions(engine, store, pairs)
    state = gr.State(new_state)
    with gr.Row():
        # too wide to share a phone's row: there the button goes under the box
        box = gr.Textbox(placeholder="Ask a question; two anonymous variants answer",
                         show_label=False, scale=5, min_width=300, elem_id="cb-arena-question")
        ask = gr.Button("Ask both", variant="primary", scale=1, min_width=100,
                        elem_id="cb-arena-ask")
    with gr.Row():
        with gr.Column():
            gr.Markdown("**A**")
            answer_a = gr.Markdown(elem_id="cb-arena-a", container=True, min_height=120)
        with gr.Column():
            gr.Markdown("**B**")
            answer_b = gr.Markdown(elem_id="cb-arena-b", container=True, min_height=120)
    status = gr.Markdown(WAITING, elem_id="cb-arena-status")
    with gr.Row():
        buttons = {choice: gr.Button(label, interactive=False, elem_id=f"cb-vote-{choice}")
                   for choice, label in CHOICE_LABELS.items()}
    outputs = [answer_a, answer_b, state, status]

    def ask_events(question, current):
        for a, b, new, text, update in actions.ask(question, current):
            yield (a, b, new, text, *[update] * len(buttons))

    for trigger in (box.submit, ask.click):
        trigger(ask_events, [box, state], [*outputs, *buttons.values()],
                **answer_queue(answers_at_once))

    for choice, button in buttons.items():
        def on_vote(current, request: gr.Request, choice=choice):
            text, new, update = actions.vote(choice, current, request)
            return (text, new, *[update] * len(buttons))

        button.click(on_vote, [state], [status, state, *buttons.values()])
    return actions
