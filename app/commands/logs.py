"""``chatbot logs list|show|export|correct|delete``: the conversation log
(``<data_dir>/logs.sqlite``)."""

from __future__ import annotations

import dataclasses
import functools
import getpass
import json
import sqlite3
import sys
from pathlib import Path
from typing import Any, Callable, TextIO

import click

from app.commands.common import BotConfig, InOrderGroup, counted, existing_log, in_section, \
    one_line_errors, output_path, print_json, print_table, shown, with_config
from chatbot import migrations
from chatbot.errors import InputError, LogError
from chatbot.logs import ConversationLog, LoggedConversation, LoggedTurn
from index.jsonfile import replacing

RATINGS = {1: "thumbs up", -1: "thumbs down"}
MAX_LIMIT = 2**63 - 1
"""SQLite's largest integer: a larger ``--limit`` lists every session, as this one does."""


def open_log(config: BotConfig) -> ConversationLog:
    return ConversationLog(existing_log(config))


def lock_named(command: Callable) -> Callable:
    """A command that writes to the log: a write another process holds open past SQLite's
    busy timeout is one line naming the log (the command's transaction was rolled back)."""

    @functools.wraps(command)
    def wrapper(*args: Any, config: BotConfig, **kwargs: Any) -> Any:
        try:
            return command(*args, config=config, **kwargs)
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc):
                raise
            raise LogError(f"the conversation log {existing_log(config)} is locked by another "
                           "process that has been writing to it for over "
                           f"{migrations.BUSY_TIMEOUT_S} s ({exc}); nothing was changed: try "
                           "again once it is done") from None

    return wrapper


def answered_pairs(conversation: LoggedConversation) -> list[tuple[LoggedTurn, LoggedTurn]]:
    """(question, answer) pairs whose answer completed; interrupted or failed ones are left out."""
    pairs, question = [], None
    for turn in conversation.turns:
        if turn.role == "user":
            question = turn
        elif turn.role == "assistant" and question is not None:
            if turn.status == "complete" and turn.text:
                pairs.append((question, turn))
            question = None
    return pairs


def export_metadata(conversation: LoggedConversation, pairs: list) -> dict:
    feedback = [{"answer": n, "turn_id": answer.id, "rating": answer.rating,
                 "comment": answer.comment}
                for n, (_, answer) in enumerate(pairs) if answer.rating is not None]
    variants = sorted({answer.variant for _, answer in pairs if answer.variant})
    return {"session_id": conversation.session_id, "created_at": conversation.created_at,
            "variants": variants, "feedback": feedback}


def as_openai(conversation: LoggedConversation, pairs: list) -> dict:
    messages = []
    for question, answer in pairs:
        messages += [{"role": "user", "content": question.text},
                     {"role": "assistant", "content": answer.text}]
    return {"messages": messages, "metadata": export_metadata(conversation, pairs)}


def as_sharegpt(conversation: LoggedConversation, pairs: list) -> dict:
    turns = []
    for question, answer in pairs:
        turns += [{"from": "human", "value": question.text},
                  {"from": "gpt", "value": answer.text}]
    return {"id": conversation.session_id, "conversations": turns,
            "metadata": export_metadata(conversation, pairs)}


FORMATS = {"openai": as_openai, "sharegpt": as_sharegpt}


@in_section("Conversations")
@click.group(cls=InOrderGroup)
def logs() -> None:
    """The conversation log: list sessions, show one, export them as JSONL, correct an answer,
    erase sessions."""


@logs.command("list")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True,
              help="Most recent sessions to list.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@with_config
@one_line_errors
def list_sessions(config: BotConfig, limit: int, as_json: bool) -> None:
    """Sessions, most recent first: id, start, variant, turn count."""
    sessions = open_log(config).sessions(min(limit, MAX_LIMIT))
    if as_json:
        print_json(sessions)
        return
    if not sessions:
        click.echo("no conversations logged yet")
        return
    print_table(["session", "started", "variant", "turns"],
                [[s["id"], s["created_at"], s["variant"] or "-", s["turns"]] for s in sessions])


@logs.command("show")
@click.argument("session_id")
@click.option("--json", "as_json", is_flag=True,
              help="Print every turn with its exact messages, sources, timings and feedback.")
@with_config
@one_line_errors
def show(config: BotConfig, session_id: str, as_json: bool) -> None:
    """One conversation, turn by turn, with sources and feedback."""
    conversation = open_log(config).conversation(session_id)
    if as_json:
        print_json(dataclasses.asdict(conversation))
        return
    click.echo(f"session {conversation.session_id} · started {conversation.created_at}")
    for turn in conversation.turns:
        _echo_turn(turn)


def _echo_turn(turn: LoggedTurn) -> None:
    if turn.role == "user":
        click.secho(f"\nyou> {turn.text}", bold=True)
        return
    facts = [turn.variant or "-", turn.status]
    if turn.timings.get("total_ms") is not None:
        facts.append(f"{turn.timings['total_ms'] / 1000:.2f} s")
    click.echo(f"bot> {turn.text}")
    click.secho(f"     [{' · '.join(facts)}] turn {turn.id}", dim=True)
    if turn.error:
        click.secho(f"     error: {turn.error}", fg="red")
    if turn.settings.get("retrieval_query"):
        click.secho(f"     searched: {turn.settings['retrieval_query']}", dim=True)
    for n, hit in enumerate(turn.hits, start=1):
        where = f" ({hit['location']})" if hit.get("location") else ""
        click.secho(f"     [{n}] {shown(hit['source'])}{where} score {hit['score']}", dim=True)
    if turn.rating is not None:
        comment = f": {turn.comment}" if turn.comment else ""
        click.echo(f"     feedback: {RATINGS[turn.rating]}{comment}")
    if turn.correction is not None:
        click.echo(f"     corrected: {turn.correction}")
    elif turn.approved:
        click.echo("     approved by a reviewer")


@logs.command("export")
@click.option("--format", "fmt", type=click.Choice(list(FORMATS)), default="openai",
              show_default=True, help="openai: {messages}; sharegpt: {conversations}.")
@click.option("--out", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
              required=True, help="JSONL file to write (one conversation a line); - for "
              "standard output.")
@with_config
@one_line_errors
def export(config: BotConfig, fmt: str, out: Path) -> None:
    """Write each conversation's answered user/assistant turns as JSONL; feedback as metadata."""
    to_stdout = str(out) == "-"
    if not to_stdout:
        output_path(config, out, "--out")
    log = open_log(config)  # a missing log fails here, before the file is touched
    if to_stdout:  # the summary goes to stderr, so stdout holds only the records
        counts = write_export(log, fmt, sys.stdout)
        click.echo(f"wrote {_exported(counts)} to stdout", err=True)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    with replacing(out) as handle:  # an export cut short leaves the earlier file whole
        counts = write_export(log, fmt, handle)
    click.echo(f"wrote {_exported(counts)} to {shown(out)}")


def _exported(counts: tuple[int, int]) -> str:
    return f"{counted(counts[0], 'conversation')}, {counted(counts[1], 'answer')}"


def write_export(log: ConversationLog, fmt: str, handle: TextIO) -> tuple[int, int]:
    """Write each answered conversation as one ``fmt`` record; (conversations, answers)."""
    conversations = answers = 0
    for conversation in log.conversations():
        pairs = answered_pairs(conversation)
        if pairs:
            record = FORMATS[fmt](conversation, pairs)
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            conversations, answers = conversations + 1, answers + len(pairs)
    return conversations, answers


def user_name() -> str | None:
    """Who runs the command; none where the system has no name for this user (a container run
    as a bare uid, without $USER): the correction is then saved without an author."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return None


@logs.command("correct")
@click.argument("turn_id", type=int, required=False)
@click.option("--text", help="The corrected answer of TURN_ID.")
@click.option("--file", "path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="JSONL of {\"turn_id\": N, \"text\": \"...\"} rows, instead of TURN_ID.")
@click.option("--author", default=user_name, show_default="your user name",
              help="Who corrected the answer(s).")
@with_config
@one_line_errors
@lock_named
def correct(config: BotConfig, turn_id: int | None, text: str | None, path: Path | None,
            author: str) -> None:
    """Save the right answer of a logged answer (turn ids: `chatbot logs show SESSION`); the
    generated text stays, and `chatbot data build` trains on the correction."""
    if (turn_id is None) == (path is None):
        raise InputError("give either TURN_ID with --text, or --file corrections.jsonl")
    if path is None and text is None:
        raise InputError(f"give the corrected answer of turn {turn_id} with --text")
    log = open_log(config)
    try:
        rows = read_corrections(path, log) if path else [(turn_id, text)]
        log.add_corrections(rows, author)
    finally:
        log.close()
    click.echo(f"saved {counted(len(rows), 'correction')} to {shown(log.path)}")


def read_corrections(path: Path, log: ConversationLog) -> list[tuple[int, str]]:
    """The (turn id, text) rows of a corrections file, or an error naming every bad line at
    once: the lines that can't be read and the corrections the log can't take alike."""
    rows, numbers, problems = [], [], []
    for number, raw in enumerate(path.read_bytes().splitlines(), start=1):
        try:
            line = raw.decode("utf-8").removeprefix("\ufeff")
        except UnicodeDecodeError as exc:
            problems.append((number, f"not UTF-8 text (byte 0x{raw[exc.start]:02x}); re-save "
                                     "the file as UTF-8"))
            continue
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append((number, f"not JSON ({exc.msg})"))
            continue
        if (not isinstance(record, dict) or type(record.get("turn_id")) is not int
                or not isinstance(record.get("text"), str)):
            problems.append((number, 'expected {"turn_id": N, "text": "..."}'))
            continue
        rows.append((record["turn_id"], record["text"]))
        numbers.append(number)
    problems += [(numbers[index], why) for index, why in log.refused_corrections(rows)]
    if problems:
        listed = [f"{shown(path)}:{number}: {why}" for number, why in sorted(problems)[:10]]
        unlisted = len(problems) - len(listed)
        raise InputError(f"{counted(len(problems), 'bad line')}, nothing saved: "
                         + "; ".join(listed)
                         + (f"; and {counted(unlisted, 'more bad line')}" if unlisted else ""))
    if not rows:
        raise InputError(f"{shown(path)} holds no corrections")
    return rows


@logs.command("delete")
@click.argument("session_ids", nargs=-1)
@click.option("--containing", metavar="TEXT",
              help="Also every session where someone wrote TEXT (any case): in a message, a "
                   "rating's comment or a correction, e.g. a person's email address.")
@click.option("--yes", is_flag=True, help="Delete without asking first.")
@with_config
@one_line_errors
@lock_named
def delete(config: BotConfig, session_ids: tuple[str, ...], containing: str | None,
           yes: bool) -> None:
    """Erase sessions from the log, with their ratings, corrections and A/B records (a
    person's request to remove what they wrote); datasets built before keep their copy."""
    from chatbot.log_erasure import erase_sessions, sessions_mentioning

    if not session_ids and not (containing or "").strip():
        raise InputError("name the sessions (`chatbot logs list` shows them) or give "
                         "--containing TEXT")
    log = open_log(config)
    path = log.path
    try:
        known = {row["id"]: row for row in log.sessions(limit=-1)}
    finally:
        log.close()
    unknown = [s for s in session_ids if s not in known]
    if unknown:
        raise InputError(f"no session {', '.join(map(repr, unknown))} in {shown(path)}; "
                         "`chatbot logs list` shows the sessions")
    chosen = list(dict.fromkeys([*session_ids, *(
        sessions_mentioning(path, containing.strip()) if containing else [])]))
    if not chosen:
        click.echo(f"no session holds {containing!r}; nothing deleted")
        return
    for session in chosen:
        click.echo(f"{session}\t{known[session]['created_at']}\t{known[session]['turns']} turns")
    if not yes and not _confirmed(f"Erase {counted(len(chosen), 'session')} from {path}?"):
        raise InputError("nothing erased; answer y to erase, or pass --yes to erase without "
                         "asking")
    erased = erase_sessions(path, chosen)
    click.echo(f"erased {counted(erased.sessions, 'session')}: "
               f"{counted(erased.turns, 'turn')}, {counted(erased.ratings, 'rating')}, "
               f"{counted(erased.corrections, 'correction')}, "
               f"{counted(erased.battles, 'arena battle')}. "
               "Datasets and exports made before keep their copy: rebuild or delete them "
               "(`chatbot data list`).")


def _confirmed(question: str) -> bool:
    """The user's yes; no one to answer (standard input closed, Ctrl-C) is a no."""
    try:
        return click.confirm(question)
    except click.Abort:
        click.echo(err=True)  # end the prompt's line
        return False


COMMANDS = [logs]
