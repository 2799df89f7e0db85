"""The Chat tab: streamed answers, linked citations, sources, the exact prompt, feedback.

The page keeps its own conversation (one ``ChatState`` per browser session) and passes it to
the engine as history, so regenerate and clear are plain list edits. Run it with
``chatbot serve``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import gradio as gr

from chatbot.answer_stream import CUT_SHORT_BY_SHUTDOWN
from chatbot.engine import Engine
from chatbot.errors import ChatbotError, InputError, NotInLog
from app.ui.chat_state import ChatEvent, ChatState, ShownAnswer, new_state
from app.ui.render import (CUT_OFF_NOTICE, SOURCES_PLACEHOLDER, cited_numbers, error_text,
                           meta_line, query_line, sources_html)
from app.ui.support import answer_markup, plain_answer, support_line, supporting_spans


ANSWERING = '<div class="cb-sources-empty">Answering...</div>'
NOT_ANSWERED = '<div class="cb-sources-empty">Not answered: no sources to show.</div>'
STILL_ANSWERING = ("The bot is still answering your last question; send this one when that "
                   "answer is in (Clear stops it).")


def prefix_for(index: int) -> str:
    """Anchor prefix of answer ``index``'s sources; the page script links citations to it."""
    return f"src-{index + 1}"


class ChatActions:
    """The tab's event functions, callable without a server (the tests call them directly).

    ``respond`` and ``regenerate`` yield (chat messages, state, message box, sources HTML,
    exact prompt, comment box) as the answer streams.

    Each click is answered by one event, never a chain (``.then``) or two listeners on one
    trigger: Gradio's page waits for an event's messages on a stream the server closes when
    its session has nothing pending, and an event sent just as that happens is answered on
    the closed stream, so its answer never shows and Enter stays ignored.
    """

    def __init__(self, engine: Engine, assign_variant: Callable[[str], str] | None = None,
                 show_variant_names: bool = True) -> None:
        self.engine = engine
        self.assign_variant = assign_variant
        self.show_variant_names = show_variant_names
        self.on_page_load: list[tuple] = []
        """(function, outputs) pairs ``build_app`` runs when a page opens."""

    def variant_choices(self) -> dict:
        """The variant picker's choices when a page opens: a variant added while serving (an
        adapter trained by `chatbot train` or in the Training tab) is listed from the next
        page load."""
        self.engine.add_new_variants()
        return gr.update(choices=list(self.engine.variants))

    def variant_for(self, state: ChatState, choice: str | None) -> str:
        if self.assign_variant is not None:
            return self.assign_variant(state.session_id)
        return choice or self.engine.default_variant

    def chat_messages(self, state: ChatState, answers: int | None = None) -> list[dict]:
        """The chat as the page draws it: the first ``answers`` questions and answers (all)."""
        shown = []
        for index, answer in enumerate(state.answers[:answers]):
            reply = answer.reply
            content = (answer.correction if answer.correction is not None else
                       answer_markup(reply.text, reply.attribution, prefix_for(index)))
            shown += [{"role": "user", "content": answer.question},
                      {"role": "assistant", "content": content}]
        return shown

    def drawn(self, state: ChatState | None) -> dict:
        """The whole chat with its thumbs as the log has them: the page keeps each thumb lit
        by position, so a chat drawn again (an answer replaced, a new conversation) must
        bring its thumbs along."""
        return gr.update(value=self.chat_messages(state) if state else [],
                         feedback_value=self.thumbs(state))

    def thumbs(self, state: ChatState | None) -> list[str | None]:
        return [a.feedback for a in state.answers] if state else []

    def panel(self, state: ChatState, index: int | None = None) -> tuple[str, list[dict] | None]:
        """Sources HTML and exact prompt of answer ``index`` (default: the latest)."""
        if not state.answers:
            return SOURCES_PLACEHOLDER, None
        index = len(state.answers) - 1 if index is None else index
        reply = state.answers[index].reply
        variant = reply.variant if self.show_variant_names else None
        heading = (f"<div class='cb-meta'>Answer {index + 1}</div>"
                   + meta_line(variant, reply.timings, reply.refused, reply.filtered)
                   + (CUT_OFF_NOTICE if reply.reached_token_limit else "")
                   + query_line(reply.retrieval_query) + support_line(reply.attribution))
        cited = cited_numbers(reply.text, len(reply.hits))
        return (sources_html(reply.hits, prefix_for(index), cited, heading,
                             supporting_spans(reply.attribution)),
                [m.as_dict() for m in reply.messages])

    def respond(self, message: str, state: ChatState, choice: str | None = None) -> Iterator:
        state = state if state is not None else new_state()
        yield from self._answer(message or "", state, choice)

    def regenerate(self, state: ChatState, choice: str | None = None) -> Iterator:
        """Answer the last question again (a new turn in the log); earlier turns stay.

        After a failed answer that is the question that failed; otherwise the new answer
        replaces the last one once it is complete (a failure leaves the old one in place)."""
        if state is not None and state.answering:
            yield from self._still_answering(state, gr.update())
        elif state is not None and state.unanswered is not None:
            yield from self._answer(state.unanswered, state, choice)
        elif state is None or not state.answers:
            gr.Info("There is no answer to regenerate yet.")
            yield (self.chat_messages(state) if state else [], state, gr.update(),
                   *self.panel(state or new_state()), gr.update())
        else:
            yield from self._answer(state.answers[-1].question, state, choice, replace_last=True)

    def _answer(self, question: str, state: ChatState, choice: str | None,
                replace_last: bool = False) -> Iterator:
        """Stream the answer, unless one is being written for this page: then the question
        is refused and left in the box, and the chat is left to the answer in progress."""
        if state.answering:
            yield from self._still_answering(state, question if not replace_last else
                                             gr.update())
            return
        state.answering = True
        try:
            yield from self._stream_answer(question, state, choice, replace_last)
        finally:
            state.answering = False

    def _still_answering(self, state: ChatState, box: str | dict) -> Iterator:
        """Refuse a question while this page's answer is written: the chat is left to it."""
        gr.Warning(STILL_ANSWERING)
        yield (gr.update(), state, box, gr.update(), gr.update(), gr.update())

    def _stream_answer(self, question: str, state: ChatState, choice: str | None,
                       replace_last: bool) -> Iterator:
        """Stream the answer to ``question``; ``replace_last`` answers it in place of the last
        answer, which is left out of the history and of the chat while the new one streams.
        The comment box open for an earlier answer closes as it starts (a comment typed from
        then on would be read as about the new answer). The message box is emptied only as a
        question typed there is sent: the next question, typed while the answer streams, stays."""
        state.rated = None  # a comment typed from now on would be read as about the new answer
        kept = len(state.answers) - 1 if replace_last else len(state.answers)
        try:
            stream = self.engine.answer(state.session_id, question,
                                        self.variant_for(state, choice),
                                        history=state.history(kept))
        except InputError as exc:
            gr.Warning(error_text(exc))
            yield (self.chat_messages(state), state, question if not replace_last else
                   gr.update(), *self.panel(state), gr.update())
            return
        shown = self.chat_messages(state, kept) + [
            {"role": "user", "content": stream.question}, {"role": "assistant", "content": ""}]
        yield (shown, state, "" if not replace_last else gr.update(), ANSWERING, None,
               gr.update(visible=False))
        text = ""
        try:
            for piece in stream:
                text += piece
                shown[-1] = {"role": "assistant", "content": text}
                yield (shown, state, gr.update(), ANSWERING, None, gr.update())
        except ChatbotError as exc:
            yield self._not_answered(state, stream.question, error_text(exc), replace_last)
            return
        finally:  # a closed or reloaded tab closes this generator: the answer stops with it
            stream.cancel()
        if stream.cut_short_by_shutdown:
            gr.Warning(CUT_SHORT_BY_SHUTDOWN)
        state.answers[kept:] = [ShownAnswer(stream.question, stream.reply)]
        state.unanswered = None
        yield (self.drawn(state), state, gr.update(), *self.panel(state), gr.update())

    def _not_answered(self, state: ChatState, question: str, error: str,
                      replace_last: bool) -> tuple:
        """A failed answer said where it would have been (a raised error marked the chat, the
        message box and the sources as failed, and the question left the page), for
        Regenerate to ask again; a failed regeneration shows the answer it was to replace."""
        error = error.rstrip(".")
        if replace_last:
            gr.Warning(f"Not answered: {error}; the earlier answer is kept. Regenerate tries "
                       "again.")
            return (self.drawn(state), state, gr.update(), *self.panel(state), gr.update())
        state.unanswered = question
        failed = [{"role": "user", "content": question}, {
            "role": "assistant", "content": f"**Not answered:** {error}. Regenerate asks the "
                                            "question again."}]
        return (gr.update(value=self.chat_messages(state) + failed,
                          feedback_value=[*self.thumbs(state), None]),
                state, gr.update(), NOT_ANSWERED, None, gr.update())

    def clear(self, state: ChatState | None) -> tuple:
        """Start a new conversation: a new session id, nothing shown (the old one stays in
        the log)."""
        return self.drawn(None), new_state(), "", SOURCES_PLACEHOLDER, None, gr.update(
            visible=False)

    def rate(self, state: ChatState, like: ChatEvent) -> tuple:
        """Thumbs up/down on an answer: written to the log at once; a comment may follow.
        Clicking the thumb again takes the rating (and its comment) back out of the log.
        Returns (state, comment box, the chat's thumbs)."""
        answer = self._answer_at(state, like.index)
        withdrawn = like.liked == ""  # the browser's thumb clicked again, to take it back
        if not (like.liked in (True, False) or withdrawn) or answer is None:
            return state, gr.update(), self.lit_thumbs(state)
        if self.engine.log is None or answer.reply.turn_id is None:
            gr.Warning("Conversation logging is off (logging.enabled): feedback is not kept.")
            return state, gr.update(), self.lit_thumbs(state)
        answer.feedback = None if withdrawn else ("Like" if like.liked else "Dislike")
        if withdrawn:
            self.engine.log.withdraw_feedback(answer.reply.turn_id)
            if state.rated is None or state.rated[0] != answer.reply.turn_id:
                # a comment pending on another answer stays
                return state, gr.update(), self.lit_thumbs(state)
            state.rated = None
            return state, gr.update(visible=False), self.lit_thumbs(state)
        rating = 1 if like.liked else -1
        try:
            self.engine.log.add_feedback(answer.reply.turn_id, rating)
        except NotInLog:
            return _erased(state, answer, "rating"), gr.update(visible=False), self.lit_thumbs(
                state)
        state.rated = (answer.reply.turn_id, rating)
        gr.Info("Thanks: feedback saved. Add a comment below if you like.")
        return state, gr.update(visible=True), self.lit_thumbs(state)

    def lit_thumbs(self, state: ChatState | None) -> dict:
        """The chat's thumbs as the log has them (a thumb the log refused goes unlit)."""
        return gr.update(feedback_value=self.thumbs(state))

    def comment(self, state: ChatState, text: str) -> tuple:
        if state is None or state.rated is None:
            gr.Warning("Rate an answer with thumbs up or down first, then comment.")
            return state, text, gr.update(visible=False)
        if not (text or "").strip():
            gr.Warning("The comment is empty.")
            return state, text, gr.update()
        turn_id, rating = state.rated
        try:
            self.engine.log.add_feedback(turn_id, rating, text.strip())
        except NotInLog:
            answer = next(a for a in state.answers if a.reply.turn_id == turn_id)
            return _erased(state, answer, "comment"), text, gr.update(visible=False)
        except InputError as exc:  # too long to keep: left in the box to shorten
            gr.Warning(error_text(exc))
            return state, text, gr.update()
        state.rated = None
        gr.Info("Comment saved.")
        return state, "", gr.update(visible=False)

    def correct(self, state: ChatState, edited: ChatEvent, request: gr.Request) -> tuple:
        """An answer edited in place: its text is saved as the turn's correction (the answer
        as generated stays in the log). A question can't be edited: ask it again instead."""
        answer = self._answer_at(state, edited.index)
        if answer is None:
            gr.Warning("Only the bot's answers can be corrected; to change a question, ask it "
                       "again.")
        elif self.engine.log is None or answer.reply.turn_id is None:
            gr.Warning("Conversation logging is off (logging.enabled): corrections are not kept.")
        else:
            text = plain_answer(edited.value if isinstance(edited.value, str) else "")
            try:
                self.engine.log.add_correction(answer.reply.turn_id, text,
                                               getattr(request, "username", None))
            except NotInLog:
                _erased(state, answer, "correction")
            except InputError as exc:
                gr.Warning(error_text(exc))
            else:
                answer.correction = text.strip()
                gr.Info("Correction saved with this answer; training data will use it.")
        return self.chat_messages(state) if state else [], state

    def select(self, state: ChatState, selected: ChatEvent) -> tuple:
        """Clicking an answer shows its sources and prompt."""
        index = _message_index(selected.index)
        if state is None or index is None or index // 2 >= len(state.answers):
            return gr.update(), gr.update()
        return self.panel(state, index // 2)

    def _answer_at(self, state: ChatState | None, index) -> ShownAnswer | None:
        index = _message_index(index)
        if state is None or index is None or index % 2 != 1 or index // 2 >= len(state.answers):
            return None
        return state.answers[index // 2]


ERASED = ("This answer was erased from the conversation log (`chatbot logs delete`) while the "
          "page showed it: its {what} was not kept. Clear the chat to start a new conversation.")


def _erased(state: ChatState, answer: ShownAnswer, what: str) -> ChatState:
    """Say the log no longer holds ``answer``; its thumb goes unlit and no comment waits."""
    gr.Warning(ERASED.format(what=what))
    answer.feedback = None
    state.rated = None
    return state


def _message_index(index: object) -> int | None:
    """The chat message an event names: Gradio sends ``n`` or ``[n, column]``; anything else
    (a hand-made API call) names none."""
    if isinstance(index, list) and index:
        index = index[0]
    return index if isinstance(index, int) and not isinstance(index, bool) and index >= 0 else None


def build_chat_tab(engine: Engine, assign_variant: Callable[[str], str] | None = None,
                   show_variant_names: bool = True, answers_at_once: int = 1) -> ChatActions:
    """Lay out the Chat tab inside the current ``gr.Blocks`` and wire its events.

    Up to ``answers_at_once`` visitors are answered together (send and regenerate share the
    count); Gradio's own default, one, would make every visitor wait for the one answer in
    progress, however long a slow backend takes."""
    actions = ChatActions(engine, assign_variant, show_variant_names)
    state = gr.State(new_state)
    with gr.Row():
        with gr.Column(scale=3):
            chatbot = gr.Chatbot(label="Chat", height=520, elem_id="cb-chat",
                                 buttons=["copy", "copy_all"], group_consecutive_messages=False,
                                 feedback_options=("Like", "Dislike"), sanitize_html=True,
                                 editable="all",
                                 placeholder="Ask a question about your documents.")
            with gr.Row():
                box = gr.Textbox(placeholder="Type a question and press Enter", scale=5,
                                 show_label=False, elem_id="cb-message", autofocus=True)
                send = gr.Button("Send", variant="primary", scale=1, min_width=80,
                                 elem_id="cb-send")  # leaves a phone's row to the box
            with gr.Row():
                regenerate = gr.Button("Regenerate", size="sm", elem_id="cb-regenerate")
                clear = gr.Button("Clear", size="sm", elem_id="cb-clear")
            with gr.Row(visible=False) as comment_row:
                comment = gr.Textbox(placeholder="Optional: what was good or wrong?",
                                     show_label=False, scale=5, elem_id="cb-comment")
                send_comment = gr.Button("Add comment", size="sm", scale=1)
        with gr.Column(scale=2):
            variant = gr.Dropdown(list(engine.variants), value=engine.default_variant,
                                  label="Variant", elem_id="cb-variant",
                                  visible=assign_variant is None and show_variant_names)
            gr.Markdown("### Sources")
            sources = gr.HTML(SOURCES_PLACEHOLDER, elem_id="cb-sources", js_on_load=None)
            with gr.Accordion("Exact prompt sent to the model", open=False):
                prompt = gr.JSON(label="messages", elem_id="cb-prompt")
    streamed = [chatbot, state, box, sources, prompt, comment_row]
    answering = answer_queue(answers_at_once)
    answers = []
    for trigger in (box.submit, send.click):
        answers.append(trigger(actions.respond, [box, state, variant], streamed, **answering))
    for trigger in (regenerate.click, chatbot.retry):  # the new answer is not rated
        answers.append(trigger(actions.regenerate, [state, variant], streamed, **answering))
    for trigger in (clear.click, chatbot.clear):  # an answer in progress stops: it is cleared
        trigger(actions.clear, [state], streamed, cancels=answers)
    actions.on_page_load.append((actions.variant_choices, [variant]))
    chatbot.like(actions.rate, [state], [state, comment_row, chatbot])
    chatbot.select(actions.select, [state], [sources, prompt])
    chatbot.edit(actions.correct, [state], [chatbot, state])
    for trigger in (comment.submit, send_comment.click):
        trigger(actions.comment, [state, comment], [state, comment, comment_row])
    return actions


def answer_queue(answers_at_once: int) -> dict:
    """Event options that put an answering event in the one queue every tab's answers share:
    the model answers ``answers_at_once`` questions together, whichever tab asked them."""
    return {"concurrency_limit": answers_at_once, "concurrency_id": "chat-answers"}
