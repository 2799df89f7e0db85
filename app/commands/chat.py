"""``chatbot ask`` and ``chatbot chat``: the bot in a terminal."""

from __future__ import annotations

import io
import logging
import os
import select
import signal
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import click

MAX_HISTORY_TURNS = 50
"""Question/answer pairs a terminal session keeps; the prompt holds fewer when they don't fit
the model's context."""

from app.commands.common import BotConfig, FreeTextCommand, ctrl_c_ends_with, in_section, \
    one_line_errors, print_json, shown, with_config
from chatbot.interrupts import raise_if_interrupted


def _echo_answer(stream, line_open: bool = False) -> None:
    """Print the answer as it streams; an answer cut short by an error ends its line first,
    so the error printed next starts a line of its own."""
    from chatbot.errors import ChatbotError

    try:
        for piece in stream:
            click.echo(piece, nl=False)
            line_open = True
    except ChatbotError:
        if line_open:
            click.echo()
        raise
    click.echo()


def _print_sources(reply, question: str) -> None:
    if reply.retrieval_query and reply.retrieval_query != question:  # a follow-up's context
        click.secho(f"  searched: {reply.retrieval_query}", dim=True)
    for source in reply.sources():
        where = f" ({source['location']})" if source["location"] else ""
        click.secho(f"  [{source['n']}] {shown(source['source'])}{where}  score {source['score']}",
                    dim=True)
    _print_support(reply)


def _print_support(reply) -> None:
    """The answer's support; a terminal can't underline, so unsupported sentences are listed."""
    from chatbot.attribution import flag_notice

    attribution = reply.attribution
    if attribution is None or attribution.action == "withheld":
        return
    if attribution.action == "flagged":
        click.secho(flag_notice(attribution.score), fg="yellow")
    click.secho(f"  supported by the sources: {attribution.score:.0%}", dim=True)
    for sentence in attribution.sentences:
        if sentence.claim and not sentence.supported:
            click.secho(f"  unsupported: {reply.text[sentence.start:sentence.end]}",
                        fg="yellow")


@in_section("Chat")
@click.command(cls=FreeTextCommand)
@click.argument("question")
@click.option("--variant", help="Variant to answer with [default: the config's default].")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object: text, variant, sources, timings, messages.")
@with_config
@one_line_errors
def ask(config: BotConfig, question: str, variant: str | None, as_json: bool) -> None:
    """Answer one question and exit.

    Give - as QUESTION to read the question from standard input."""
    from chatbot.errors import BackendError, InputError

    if question == "-":  # `echo q | chatbot ask -`, as Unix tools read `-`
        question = _piped_text(sys.stdin.buffer.read()).strip()
        if not question:
            raise InputError("nothing on standard input to ask; pipe the question in (echo "
                             "'How do I index?' | chatbot ask -), or give it in place of -")
    stopped = ("the answer so far is logged as interrupted" if config.logging.enabled
               else "the answer was stopped")
    stream = None
    with ctrl_c_ends_with(lambda: stopped if stream is not None else "no answer had begun"):
        from app.build import build_engine  # seconds of libraries: a Ctrl-C there ends here too

        engine = build_engine(config)
        raise_if_interrupted()  # one Python dropped while the model loaded: before any answer
        stream = engine.answer(_new_session(), question, variant)  # a bad question fails here
        _note_if_nothing_indexed(config, engine.variant(variant))
        try:
            with _warnings_held_until(BackendError) as release:
                if as_json:
                    print_json(stream.result().as_dict())
                    return
                _echo_answer(_after(release, stream))
            _print_sources(stream.reply, stream.question)
        except BrokenPipeError:  # the reader left (`| head`)
            engine.cancel_all()  # logged interrupted; an exit mid-generation crashes in torch
            raise
        except KeyboardInterrupt:
            engine.cancel_all()
            if not as_json:
                click.echo()  # the cut answer's line ends before the error
            raise


@contextmanager
def _warnings_held_until(dropped_by: type[Exception]) -> Iterator[Callable[[], None]]:
    """Hold the warnings the terminal would show (logging's last resort, the CLI configures
    no other) until ``release()``, or the block's end, and show them then; an answer failing
    with ``dropped_by`` first drops them. A remote backend that is down fails the answer with
    an error naming it and what to do, and the warnings on the way there (its context window
    and token counts left to estimates) only put two lines of fallbacks before it."""
    held = _HeldWarnings()
    shown_by, logging.lastResort = logging.lastResort, held

    def release() -> None:
        if logging.lastResort is held:
            logging.lastResort = shown_by
            for record in held.records:
                shown_by.handle(record)

    try:
        yield release
    except dropped_by:
        logging.lastResort = shown_by
        raise
    finally:
        release()


class _HeldWarnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _after(release: Callable[[], None], stream: Iterator[str]) -> Iterator[str]:
    """``stream``'s pieces, ``release()`` called before the first is shown."""
    for piece in stream:
        release()
        yield piece


@in_section("Chat")
@click.command()
@click.option("--variant", help="Variant to answer with [default: the config's default].")
@with_config
@one_line_errors
def chat(config: BotConfig, variant: str | None) -> None:
    """Chat in the terminal: answers stream, sources follow. Ctrl-D or /quit ends."""
    try:  # a Ctrl-C while the model loads, or between answers, is one at the prompt
        from app.build import build_engine

        engine = build_engine(config)
        click.echo(f"{config.name} · variant {engine.variant(variant).name} · /clear, /quit")
        _note_if_nothing_indexed(config, engine.variant(variant))
        _converse(engine, variant)
    except KeyboardInterrupt:  # it ends the session, as at the prompt
        click.echo()


def _converse(engine, variant: str | None) -> None:
    """Question after question until the input ends or /quit; Ctrl-C during an answer stops
    that answer only."""
    from chatbot.errors import BackendError, ChatbotError
    from chatbot.types import Message

    session, history = _new_session(), []
    for question in _questions():
        if question.strip() == "/quit":
            return
        if question.strip() == "/clear":  # a new conversation, in the log too
            session, history = _new_session(), []
            continue
        try:
            with _warnings_held_until(BackendError) as release:
                stream = engine.answer(session, question, variant, history=history)
                click.echo("bot> ", nl=False)
                _echo_answer(_after(release, stream), line_open=True)
            _print_sources(stream.reply, stream.question)
        except ChatbotError as exc:  # a message too long, a model server gone: ask again
            click.echo(f"error: {exc}", err=True)
            continue
        except BrokenPipeError:  # the reader left (`| head`): the session ends with it
            engine.cancel_all()
            raise
        except KeyboardInterrupt:  # stops this answer, not the session
            engine.cancel_all()  # logged interrupted; an exit mid-generation crashes in torch
            click.echo()
            click.echo("(answer stopped; Ctrl-D or /quit ends the session)", err=True)
            continue
        history += [Message("user", stream.question), Message("assistant", stream.reply.text)]
        del history[:-2 * MAX_HISTORY_TURNS]


def _questions() -> Iterator[str]:
    """The questions typed at the prompt, or piped in one a line, until the input ends. A
    terminal echoes what is typed; questions piped in are printed after their prompt here, so
    the output reads as a transcript rather than ``you> bot> ...`` run together. Blank lines
    are skipped, as the prompt skips them."""
    if sys.stdin.isatty():
        while True:
            try:
                yield click.prompt("you", prompt_suffix="> ")
            except (EOFError, click.Abort):
                click.echo()
                return
    for line in _piped_lines():
        question = _piped_text(line).rstrip("\r\n")
        if question.strip():
            click.echo(f"you> {question}")
            yield question


def _piped_lines() -> Iterator[bytes]:
    """The lines of standard input, each with its line end (the last may have none)."""
    try:
        fd = sys.stdin.fileno()
    except (AttributeError, io.UnsupportedOperation):  # in memory: never waits for input
        yield from sys.stdin.buffer
        return
    pending = b""
    while True:
        line, end, rest = pending.partition(b"\n")
        if end:
            pending = rest
            yield line + end
            continue
        chunk = _read_when_ready(fd)
        if not chunk:
            if pending:
                yield pending
            return
        pending += chunk


def _read_when_ready(fd: int) -> bytes:
    """What ``fd`` has to read, waiting so that Ctrl-C ends the wait. A read(2) blocked in the
    main thread ends only when the kernel hands SIGINT to that thread, and it may hand it to
    any of the process's threads (torch's, a tokenizer's): Python's handler there only marks
    it, and the read waits on for the next line. So the wait is a select() on ``fd`` and on
    ``signal.set_wakeup_fd``'s pipe, which that handler writes to from whichever thread took
    the signal; select returns, and the main thread raises the KeyboardInterrupt."""
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    previous = signal.set_wakeup_fd(wake_write, warn_on_full_buffer=False)
    try:
        while True:
            ready = select.select([fd, wake_read], [], [])[0]
            if wake_read in ready:  # a signal: its handler runs before the input is read
                os.read(wake_read, 512)
                continue
            return os.read(fd, 65536)
    finally:
        signal.set_wakeup_fd(previous)
        os.close(wake_read)
        os.close(wake_write)


def _piped_text(data: bytes) -> str:
    """Piped bytes as text: a byte that is not UTF-8 (a Latin-1 file) reads as U+FFFD, so the
    question is still asked, where strict decoding stopped with a traceback."""
    return data.decode("utf-8", errors="replace")


def _note_if_nothing_indexed(config: BotConfig, variant) -> None:
    """A bot whose documents were never indexed answers from none: say so, on stderr."""
    from app.build import bot_index
    from chatbot.indexing import nothing_indexed

    if variant.retrieval and nothing_indexed(bot_index(config)):
        click.echo("note: nothing is indexed yet, so answers use no documents; index them "
                   "with `chatbot index sync` (the config's index.paths)", err=True)


def _new_session() -> str:
    return f"cli-{uuid.uuid4().hex[:12]}"


COMMANDS = [ask, chat]
