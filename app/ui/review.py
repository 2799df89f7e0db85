"""The Review tab: answers worth a person's look, and a place to correct or approve them.

Listed are finished answers that were thumbed down, flagged or withheld by attribution, or
scored below ``attribution.min_support``, and that nobody corrected or approved yet
(``ConversationLog.review_queue``). Each shows its question, the sources the model was given
and the exact prompt; a correction is saved with the turn (the answer as generated stays), and
``chatbot data build`` trains on it. Run it with ``chatbot serve`` (with logging on).
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

import gradio as gr

from chatbot.errors import InputError
from chatbot.logs import ConversationLog, ReviewItem
from app.ui.render import error_text, sources_html

COLUMNS = ["turn", "why", "question", "answer"]
COLUMN_WIDTHS = ["56px", "20%", "30%", "30%"]
"""Fixed, not sized to the cells: "turn" fits its heading, and the list fits a 400-pixel screen
with the question and answer wrapped (a percentage is of the list's width)."""
EXCERPT = 120
NOTHING = "_Nothing to review: no thumbed-down, flagged or weakly supported answer is waiting._"
PICK = "_Pick an answer from the list to review it._"


@dataclass(frozen=True)
class LoggedHit:
    """A logged passage (``hit_record``) in the shape the sources panel draws."""

    source: str
    location: str
    score: float
    text: str

    @classmethod
    def from_record(cls, record: dict) -> LoggedHit:
        return cls(record.get("source", ""), record.get("location") or "",
                   record.get("score", 0.0), record.get("text", ""))


class ReviewActions:
    """The tab's event functions, callable without a server (the tests call them directly).

    ``refresh``, ``correct`` and ``approve`` return (table rows, picker update, details...,
    the turn shown) so the list and the open answer always agree. The list holds only answers
    nobody reviewed, so a save or an approval expects that still (``seen_unreviewed``): of two
    reviewers of one answer, the first one's review is kept and the second is told.
    """

    def __init__(self, log: ConversationLog, min_support: float = 0.5) -> None:
        self.log = log
        self.min_support = min_support
        self.on_page_load: list[tuple] = []
        """(function, outputs, event options) ``build_app`` runs when a page opens."""

    def items(self) -> list[ReviewItem]:
        return self.log.review_queue(self.min_support)

    def refresh(self) -> tuple:
        items = self.items()
        first = items[0].answer.id if items else None
        return (_rows(items), gr.update(choices=_choices(items), value=first),
                *self.show(first, items), first)

    def pick(self, turn_id: int | None, shown: int | None) -> tuple | dict:
        """The reviewer's pick: its details and the turn now shown. The picker sends its value
        again each time it loses focus; the answer already shown is left as it is, so the
        correction being typed stays (``gr.skip()`` changes no output)."""
        if turn_id == shown:
            return gr.skip()
        return (*self.show(turn_id), turn_id)

    def reopen(self, shown: int | None) -> tuple:
        """(table rows, picker update, heading) on a return to the tab: the list as the log has
        it now (a thumbs-down in the Chat tab adds to it), and the open answer ``shown`` as it
        was, with the correction the reviewer typed; if it left the list meanwhile, it stays a
        choice, so that saving it says why it can't be."""
        items = self.items()
        choices = _choices(items)
        if shown is not None and shown not in [turn for _, turn in choices]:
            choices.append((f"turn {shown}: no longer waiting for review", shown))
        heading = gr.update() if shown is not None else PICK if items else NOTHING
        return _rows(items), gr.update(choices=choices), heading

    def show(self, turn_id: int | None, items: list[ReviewItem] | None = None) -> tuple:
        """(question and reasons Markdown, answer, sources HTML, exact prompt, correction box)."""
        item = next((i for i in (items if items is not None else self.items())
                     if i.answer.id == turn_id), None)
        if item is None:
            return NOTHING, "", "", None, ""
        answer = item.answer
        score = (answer.attribution or {}).get("score")
        # a withheld answer: the user saw the withheld message; the reviewer judges what the
        # model wrote, which the log keeps
        written = (answer.attribution or {}).get("withheld_text") or answer.text
        heading = (f"**Question** (session {_literal(item.session_id)}, turn {answer.id}): "
                   f"{_literal(item.question)}\n\n**Why it is listed:** "
                   f"{', '.join(item.reasons)}"
                   + (f" · support score {score:.0%}" if score is not None else "")
                   + (f"\n\n**The user was shown:** {_literal(answer.text)}"
                      if written != answer.text else "")
                   + (f"\n\n**Comment:** {_literal(answer.comment)}" if answer.comment else ""))
        hits = [LoggedHit.from_record(hit) for hit in answer.hits]
        return (heading, written, sources_html(hits, f"review-{answer.id}"),
                answer.messages, written)

    def correct(self, turn_id: int | None, text: str, request: gr.Request) -> tuple:
        """Save ``text`` as the right answer of ``turn_id``; the list moves on."""
        if turn_id is None:
            gr.Warning("Pick an answer to correct first.")
            return self.refresh()
        try:
            self.log.add_correction(_turn(turn_id), text, getattr(request, "username", None),
                                    seen_unreviewed=True)
        except InputError as exc:
            gr.Warning(error_text(exc))
            return gr.skip()
        gr.Info(f"Correction of turn {turn_id} saved.")
        return self.refresh()

    def approve(self, turn_id: int | None, request: gr.Request) -> tuple:
        """The answer is fine as it is: it leaves the list."""
        if turn_id is None:
            gr.Warning("Pick an answer to approve first.")
            return self.refresh()
        try:
            self.log.approve(_turn(turn_id), getattr(request, "username", None),
                             seen_unreviewed=True)
        except InputError as exc:
            gr.Warning(error_text(exc))
        else:
            gr.Info(f"Turn {turn_id} approved as it is.")
        return self.refresh()


def _turn(value: object) -> int:
    """A turn id as the page (or a caller of the Gradio API) sent it."""
    try:
        return int(value)
    except (TypeError, ValueError):
        raise InputError(f"{value!r} is not a turn id; pick an answer from the list") from None


def _rows(items: list[ReviewItem]) -> list[list]:
    return [[item.answer.id, ", ".join(item.reasons), _excerpt(item.question),
             _excerpt(item.answer.text)] for item in items]


def _choices(items: list[ReviewItem]) -> list[tuple[str, int]]:
    return [(f"turn {item.answer.id}: {_excerpt(item.question, 60)}", item.answer.id)
            for item in items]


def _excerpt(text: str, limit: int = EXCERPT) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def build_review_tab(tab: gr.Tab, log: ConversationLog, min_support: float = 0.5
                     ) -> ReviewActions:
    """Lay out the Review tab inside ``tab`` and wire its events."""
    actions = ReviewActions(log, min_support)
    refresh = gr.Button("Refresh", size="sm", elem_id="cb-review-refresh")
    table = gr.Dataframe(headers=COLUMNS, label="Answers to review", interactive=False,
                         wrap=True, column_widths=COLUMN_WIDTHS, elem_id="cb-review-table")
    picked = gr.Dropdown(label="Answer", choices=[], elem_id="cb-review-pick")
    heading = gr.Markdown(NOTHING, elem_id="cb-review-question")
    with gr.Row():
        with gr.Column(scale=3):
            answer = gr.Textbox(label="The answer as generated", interactive=False, lines=4)
            correction = gr.Textbox(label="Correction (the right answer)", lines=6,
                                    elem_id="cb-review-correction")
            with gr.Row():
                save = gr.Button("Save correction", variant="primary",
                                 elem_id="cb-review-save")
                approve = gr.Button("Approve as is", elem_id="cb-review-approve")
        with gr.Column(scale=2):
            sources = gr.HTML("", elem_id="cb-review-sources")
            with gr.Accordion("Exact prompt sent to the model", open=False):
                prompt = gr.JSON(label="messages")
    shown = gr.State(None)  # the turn whose details are on show
    details = [heading, answer, sources, prompt, correction, shown]
    everything = [table, picked, *details]
    # One at a time, in the order sent: a pick answered after the save that followed it
    # would put the saved answer back on show.
    in_order = {"concurrency_id": "review", "concurrency_limit": 1}
    actions.on_page_load = [(actions.refresh, everything, in_order)]
    # The open answer's details are no output: on a return to the tab, the page may set the
    # correction box back to the text last sent even for an update that changes nothing.
    # The turn on show is the server's, not the picker's value: a click on the tab as the
    # page opens sends the picker empty, before the page-load list has filled it.
    tab.select(actions.reopen, [shown], [table, picked, heading], **in_order)
    refresh.click(actions.refresh, None, everything, api_name="review_refresh", **in_order)
    # ``input``, not ``change``: a pick by the reviewer only. The other events set the picker
    # themselves, and a second event chained on their change could race the page's stream
    # (see ``ChatActions``).
    picked.input(actions.pick, [picked, shown], details, api_name="review_show", **in_order)
    save.click(actions.correct, [picked, correction], everything, api_name="review_correct",
               **in_order)
    approve.click(actions.approve, [picked], everything, api_name="review_approve", **in_order)
    return actions


_MARKDOWN_MARKS = re.compile(r"([\\`*_{}\[\]()#+\-.!|~])")


def _literal(text: str) -> str:
    """What a user wrote, shown as written inside Markdown: none of its HTML, images, links or
    formatting take effect (a question could make the reviewer's browser fetch any URL)."""
    return _MARKDOWN_MARKS.sub(r"\\\1", html.escape(text, quote=False))
