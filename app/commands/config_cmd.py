"""``chatbot config check`` and ``chatbot models prepare``: setting a bot up."""

from __future__ import annotations

from pathlib import Path

import click

from app.commands.common import in_section, one_line_errors, print_json, with_config
from chatbot.config import BotConfig
from chatbot.config_file import config_problems, default_config_path, read_yaml
from chatbot.errors import ConfigError


@in_section("Setup")
@click.group("config")
def config_group() -> None:
    """Validate a bot config."""


@config_group.command("check")
@click.argument("path", type=click.Path(path_type=Path), required=False)
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None,
              help="Same as PATH.")
@one_line_errors
def check(path: Path | None, config_path: Path | None) -> None:
    """Print every problem in a config, each with its key path; exit 1 if any."""
    if path and config_path and path != config_path:
        raise ConfigError(f"two configs given ({path} and --config {config_path}); check one "
                          "at a time")
    path = path or config_path or default_config_path()
    raw = read_yaml(path)
    problems = config_problems(raw, path.resolve().parent)
    for problem in problems:
        click.echo(f"{path}: {problem}", err=True)
    if problems:
        raise SystemExit(1)
    click.echo(f"{path}: ok")


@in_section("Setup")
@click.group("models")
def models_group() -> None:
    """Prepare the configured models (convert embedded ones into the cache)."""


@models_group.command("prepare")
@click.option("--json", "as_json", is_flag=True, help="Print the resolved paths as JSON.")
@with_config
@one_line_errors
def prepare(config: BotConfig, as_json: bool) -> None:
    """Resolve the chat model and the embedder, converting embedded ones once."""
    from chatbot.models import resolve_model

    resolved = {"chat": resolve_model(config.models.chat, config.base_dir),
                "embedder": resolve_model(config.models.embedder, config.base_dir)}
    if as_json:
        print_json(resolved)
    else:
        for role, where in resolved.items():
            click.echo(f"{role}: {where}")


COMMANDS = [config_group, models_group]
