"""What every command shares: the --config option, one-line errors, JSON output."""

from __future__ import annotations

import functools
import json
import os
import shlex
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import click

from chatbot.config import BotConfig

from chatbot.config_file import default_config_path, load_config
from chatbot.errors import ChatbotError, InputError
from chatbot.interrupts import raise_if_interrupted, stop_on_ctrl_c
from chatbot.migrations import log_exists
from chatbot.paths import DataPaths
from index.errors import IndexingError
from index.text import counted, shown


def in_section(section: str) -> Callable[[click.Command], click.Command]:
    """Mark a command with the ``chatbot --help`` section it is listed under."""

    def mark(command: click.Command) -> click.Command:
        command.section = section
        return command

    return mark


WHOLE_SENTENCE = 500
"""A command's summary in a help listing: its whole first sentence, wrapped, where click cuts
it at about 60 characters ('Index PATHS (files or folders; default: the config's...')."""


class InOrderGroup(click.Group):
    """A group whose help lists its commands in the order they are added (the order users
    meet them: ``index sync`` before ``index search``), not by name, each with its whole first
    sentence."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, command.get_short_help_str(WHOLE_SENTENCE))
                for name, command in self.commands.items() if not command.hidden]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


class FreeTextCommand(click.Command):
    """A command whose argument is free text (a question, a query, a file name): text that
    starts with '-' reads as an unknown option, so the error shows the command that passes it,
    after ``--``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, list(args))
        except click.NoSuchOption as exc:
            if exc.possibilities:  # a mistyped option: click's "Did you mean" says enough
                raise
            given = next((arg for arg in args if arg.startswith(exc.option_name)),
                         exc.option_name)
            others = [arg for arg in args if arg != given]
            fixed = shlex.join([*ctx.command_path.split(), *others, "--", given])
            raise click.NoSuchOption(exc.option_name, f"{exc.message} Text that starts with "
                                     f"'-' goes after '--': {fixed}", ctx=ctx) from None


def with_config(func: Callable) -> Callable:
    """Add ``--config PATH`` and pass the loaded, validated config as ``config``."""

    @click.option("--config", "config_path", type=click.Path(path_type=Path), default=None,
                  help="Bot config YAML [default: $CHATBOT_CONFIG or configs/default.yaml].")
    @functools.wraps(func)
    def wrapper(*args: Any, config_path: Path | None, **kwargs: Any) -> Any:
        context = click.get_current_context(silent=True)
        if context is not None and getattr(context, "invoked_subcommand", None):
            # A group on its way to a subcommand, which reads its own --config.
            return func(*args, config=None, **kwargs)
        config = one_line_errors(load_config)(config_path or default_config_path())
        return func(*args, config=config, **kwargs)

    return wrapper


def one_line_errors(func: Callable) -> Callable:
    """Print a :class:`ChatbotError` (or the index's own ``IndexingError``), or a file the
    system refused (``--out /proc/x``, a full disk), as ``error: ...`` and exit 1, never a
    traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (ChatbotError, IndexingError) as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
        except BrokenPipeError:  # the reader left (`| head`): stop quietly, as Unix tools do
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(1)
        except OSError as exc:
            where = f"{shown(exc.filename)}: " if exc.filename else ""
            click.echo(f"error: {where}{exc.strerror or exc}", err=True)
            sys.exit(1)

    return wrapper


@contextmanager
def ctrl_c_ends_with(then: str | Callable[[], str]) -> Iterator[None]:
    """Ctrl-C inside the block ends the command as the long ones end, ``error: interrupted;
    THEN`` and exit status 1 (with ``one_line_errors``), not click's bare "Aborted!", on a
    line of its own (a ``ProgressBar`` in the block ends its line as it closes). ``then`` may
    be a function: what was done by the press. A press Python dropped (inside a
    garbage-collection callback, common while a model loads) stops the work at its next step
    (``raise_if_interrupted``); one still pending at the block's end came too late to stop
    anything, so the command finishes, with a note, rather than calling complete work
    interrupted."""
    stop_on_ctrl_c()
    try:
        yield
    except KeyboardInterrupt:
        raise ChatbotError(f"interrupted; {then() if callable(then) else then}") from None
    try:
        raise_if_interrupted()
    except KeyboardInterrupt:
        click.echo("note: the work finished before the Ctrl-C could stop it; its result is "
                   "complete", err=True)


def print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def print_table(header: list[str], rows: list[list[Any]]) -> None:
    """Columns as wide as their widest cell, header included: a fixed width lets a longer
    value (a timestamp with microseconds and a zone) push the columns after it out of line."""
    lines = [header, *([str(cell) for cell in row] for row in rows)]
    widths = [max(len(line[column]) for line in lines) for column in range(len(header) - 1)]
    for line in lines:
        click.echo(" ".join([cell.ljust(width) for cell, width in zip(line, widths)]
                            + [line[-1]]))


__all__ = ["BotConfig", "FreeTextCommand", "InOrderGroup", "counted", "in_section",
           "one_line_errors", "print_json", "shown", "with_config"]


def existing_log(config: BotConfig) -> Path:
    """The bot's conversation log, which must exist: a report on a mistyped data directory
    should say so, not create an empty log there."""
    path = DataPaths(config.data_path).logs
    if not log_exists(path):
        raise InputError(f"no conversation log at {shown(path)} yet; chat with `chatbot chat` or "
                         "`chatbot serve` first (logging.enabled must be true)")
    return path


def config_file() -> Path:
    """The YAML the running command read its config from: ``--config`` or the default."""
    return click.get_current_context().params.get("config_path") or default_config_path()


def own_state(config: BotConfig) -> dict[Path, str]:
    """The files and folders the bot keeps its state in, each with what it is: an output
    written over one of them destroys that state."""
    paths = DataPaths(config.data_path)
    log_files = {paths.logs.with_name(paths.logs.name + suffix): "conversation log"
                 for suffix in ("", "-wal", "-shm", "-journal")}
    return {config_file(): "config file", **log_files, paths.index: "search index",
            paths.datasets: "datasets", paths.adapters: "adapters", paths.runs: "training runs",
            paths.evals: "evaluations", paths.sweeps: "sweeps",
            paths.uploads: "uploaded documents", paths.transcripts: "uploaded transcripts"}


def output_path(config: BotConfig, path: Path, option: str) -> Path:
    """``path``, once sure a command may write there: under folders, not under a file, and
    not on the bot's own state, named directly or through a symlink."""
    blocker = next(parent for parent in path.parents if parent.exists())
    if not blocker.is_dir():
        raise InputError(f"{shown(path)}: {shown(blocker)} is a file, not a folder; choose "
                         f"another {option} path")
    target = path.resolve()
    for own, what in own_state(config).items():
        if target == own.resolve():
            raise InputError(f"{shown(path)} is the bot's {what}; choose another {option} path")
        if target.is_relative_to(own.resolve()):
            raise InputError(f"{shown(path)} is inside the bot's {what} ({shown(own)}); choose "
                             f"another {option} path")
    return path

