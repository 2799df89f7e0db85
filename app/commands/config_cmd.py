"""``chatbot config check`` and ``chatbot models prepare``: setting a bot up."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import click

from app.commands.common import (InOrderGroup, ctrl_c_ends_with, in_section, one_line_errors,
                                 print_json, shown, with_config)
from chatbot.config import BotConfig
from chatbot.config_file import checked_config, default_config_path, read_yaml
from chatbot.errors import ConfigError

CHECK_TIMEOUT_S = 5.0
"""Most seconds ``config check`` waits for a remote backend (less where its ``timeout_s`` is
less): a server that is up lists its models at once."""


@in_section("Setup")
@click.group("config", cls=InOrderGroup)
def config_group() -> None:
    """Validate a bot config."""


@config_group.command("check")
@click.argument("path", type=click.Path(path_type=Path), required=False)
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None,
              help="Same as PATH.")
@click.option("--offline", is_flag=True, help="Check the file only; ask no remote backend.")
@one_line_errors
def check(path: Path | None, config_path: Path | None, offline: bool) -> None:
    """Print every problem in a config, each with its key path, and what would fail the
    answers of its remote backends, each asked once; exit 1 if any."""
    if path and config_path and path != config_path:
        raise ConfigError(f"two configs given ({shown(path)} and --config {shown(config_path)}); "
                          "check one at a time")
    path = path or config_path or default_config_path()
    config, problems = checked_config(read_yaml(path), path.resolve().parent)
    if config is not None and not offline:
        problems += remote_problems(config)
    for problem in problems:
        click.echo(f"{shown(path)}: {problem}", err=True)
    if problems:
        raise SystemExit(1)
    click.echo(f"{shown(path)}: ok")



def remote_problems(config: BotConfig) -> list[str]:
    """What would fail each remote backend's answers (``chatbot.remote_check``), all backends
    asked at once, each once for all of its variants' models."""
    import httpx

    from chatbot.remote_check import backend_key, backend_problems, key_setting

    def ask(name: str) -> list[str]:
        spec = config.backends[name]
        try:
            key = backend_key(name, spec.api_key_env)
        except ConfigError as exc:
            return [str(exc)]
        with httpx.Client(timeout=min(spec.timeout_s, CHECK_TIMEOUT_S), follow_redirects=True,
                          headers={"Authorization": f"Bearer {key}"} if key else None) as http:
            return backend_problems(name, spec.base_url, http.get, _models_of(config, name),
                                    key_setting(name, spec.api_key_env, bool(key),
                                                "it is not set here"))

    if not config.backends:
        return []
    with ThreadPoolExecutor(max_workers=len(config.backends)) as pool:
        return [problem for found in pool.map(ask, config.backends) for problem in found]


def _models_of(config: BotConfig, backend: str) -> dict[str, str]:
    """Each model the variants ask of ``backend`` -> the settings that name it."""
    named: dict[str, list[str]] = {}
    for variant, spec in config.variants.items():
        if spec.backend == backend:
            named.setdefault(spec.model, []).append(f"variants.{variant}.model")
    return {model: ", ".join(settings) for model, settings in named.items()}


@in_section("Setup")
@click.group("models", cls=InOrderGroup)
def models_group() -> None:
    """Prepare the configured models (convert embedded ones into the cache)."""


@models_group.command("prepare")
@click.option("--json", "as_json", is_flag=True, help="Print the resolved paths as JSON.")
@with_config
@one_line_errors
def prepare(config: BotConfig, as_json: bool) -> None:
    """Resolve the chat model and the embedder, converting embedded ones once."""
    from chatbot.models import resolve_model

    with ctrl_c_ends_with("a model cut off mid-conversion is not used: run the same command "
                          "again to convert it"):
        resolved = {"chat": resolve_model(config.models.chat, config.base_dir),
                    "embedder": resolve_model(config.models.embedder, config.base_dir)}
    if as_json:
        print_json(resolved)
    else:
        for role, where in resolved.items():
            click.echo(f"{role}: {where}")


COMMANDS = [config_group, models_group]
