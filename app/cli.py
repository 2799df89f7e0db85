"""The ``chatbot`` command: thin wrappers that turn errors into one line.

Each area's commands live in ``chatbot/commands/<area>.py``; this module only groups them so
that ``chatbot --help`` reads by what users do.
"""

from __future__ import annotations

import os

import click

from app.commands import (ab, adapters, chat, config_cmd, data, evaluate, index, logs,
                              serve, train, train_sweep)
from app.commands.common import WHOLE_SENTENCE, InOrderGroup

# Help sections, in the order users meet them; each command module names its section.
SECTIONS = ["Chat", "Documents", "Conversations", "Training and evaluation", "Setup"]


class SectionedGroup(InOrderGroup):
    """A group whose help lists commands under section headings instead of one flat list."""

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        by_section: dict[str, list[tuple[str, str]]] = {}
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            section = getattr(command, "section", "Setup")
            summary = command.get_short_help_str(WHOLE_SENTENCE)
            by_section.setdefault(section, []).append((name, summary))
        for section in SECTIONS:
            if section in by_section:
                with formatter.section(section):
                    formatter.write_dl(by_section[section])

    def invoke(self, ctx: click.Context) -> object:
        """A Ctrl-C that no command ends in its own words (those that run long or write say
        what was kept) ends in the same form, ``error: interrupted`` and exit status 1, not
        click's "Aborted!"."""
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            click.echo("error: interrupted", err=True)
            ctx.exit(1)


@click.group(cls=SectionedGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="chatbot-builder")
@click.pass_context
def main(ctx: click.Context) -> None:
    """Build a domain chatbot: index documents, chat, collect feedback, fine-tune, A/B-test."""
    if os.environ.get("NO_COLOR"):  # no-color.org: plain text even on a colour terminal
        ctx.color = False  # every subcommand's context inherits it


for module in (chat, serve, index, logs, data, train, adapters, evaluate, ab, config_cmd):
    for command in module.COMMANDS:
        main.add_command(command)
train.train_group.add_command(train_sweep.sweep)  # `chatbot train sweep`
