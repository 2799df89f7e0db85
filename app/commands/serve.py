"""``chatbot serve``: the web UI and the API on one local server."""

from __future__ import annotations

import errno
import socket
from typing import TYPE_CHECKING

import click

from app.commands.common import BotConfig, in_section, one_line_errors, with_config

if TYPE_CHECKING:
    from chatbot.engine import Engine


@in_section("Chat")
@click.command()
@click.option("--host", help="Address to bind [default: server.host, 127.0.0.1].")
@click.option("--port", type=click.IntRange(1, 65535), help="Port [default: server.port, 7860].")
@click.option("--variant", help="Variant the web UI starts with [default: the config's default].")
@click.option("--insecure", is_flag=True,
              help="Listen on a non-loopback --host even with no login and no API key.")
@with_config
@one_line_errors
def serve(config: BotConfig, host: str | None, port: int | None, variant: str | None,
          insecure: bool) -> None:
    """Serve the web UI (chat, documents) and the OpenAI-compatible API.

    With a login or an API key configured, every route requires one of them.
    """
    try:
        _serve(config, host, port, variant, insecure)
    except KeyboardInterrupt:  # while it starts too; uvicorn raises the one it stopped for again
        click.echo("stopped", err=True)


def _serve(config: BotConfig, host: str | None, port: int | None, variant: str | None,
           insecure: bool) -> None:
    import uvicorn

    from app.auth import Credentials, check_exposure
    from app.build import bot_documents, build_engine
    from chatbot.config_file import default_config_path
    from app.server import create_server_app
    from app.stopping_server import StoppingServer

    host, port = host or config.server.host, port or config.server.port
    credentials = Credentials.from_config(config)
    check_exposure(host, credentials, insecure)  # before the slow model load
    listening = _listen(host, port)  # so is a port in use
    documents = bot_documents(config)
    engine = build_engine(config, search=documents.hits, embedder=documents.embedder)
    engine.default_variant = engine.variant(variant).name
    click.echo(f"loading {engine.variant(None).model} ...")
    engine.generator_for(engine.variant(None))  # the first visitor should not wait for it
    _warn_of_backends(engine, [engine.default_variant, *_load_ab_arms(engine, config)])
    documents.hits("warm-up", 1)  # nor for the embedder, when there is an index
    config_path = click.get_current_context().params.get("config_path")
    app = create_server_app(engine, config, documents=documents,
                            config_path=config_path or default_config_path())
    url = f"http://{host}:{port}/"
    click.echo(f"{config.name}: web UI on {url}, API on {url}v1 (Ctrl-C stops)")
    click.echo(f"access: {credentials.describe(url)}")
    StoppingServer(engine, app.state.end_page_heartbeats,
                   uvicorn.Config(app, log_level="warning")).run(sockets=[listening])


def _listen(host: str, port: int) -> socket.socket:
    """The server's socket, bound before the models load: a port in use is one line at once,
    not uvicorn's error after the server said where it listens."""
    from chatbot.errors import ChatbotError

    listening = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listening.bind((host, port))
    except OSError as exc:
        listening.close()
        raise ChatbotError(f"can't listen on {host}:{port} ({exc.strerror or exc}); "
                           f"{_what_to_change(exc, host)}") from None
    return listening


def _what_to_change(exc: OSError, host: str) -> str:
    """The advice for a failed bind: the host when it is the problem, else the port."""
    hosts = "pass --host 127.0.0.1 (this machine only) or 0.0.0.0 (every network)"
    if isinstance(exc, socket.gaierror):
        return f"{host!r} is no address or host name known here: {hosts}"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"no network interface of this machine has that address: {hosts}"
    if exc.errno == errno.EACCES:
        return "ports below 1024 need administrator rights here: pass --port N above 1023"
    return "another server may be using the port: stop it, or pass --port N"


def _warn_of_backends(engine: Engine, variants: list[str]) -> None:
    """A remote backend that would fail these (loaded) variants' answers is said at start, in
    one line per served model; the bot starts anyway and answers once the server is fixed (it
    may just be starting too)."""
    asked = set()
    for variant in map(engine.variant, variants):
        if variant.backend is None or (variant.backend, variant.model) in asked:
            continue
        asked.add((variant.backend, variant.model))
        problem = engine.generator_for(variant).server_problem()
        if problem:
            click.echo(f"warning: {problem}; answers fail until it is fixed", err=True)


def _load_ab_arms(engine: Engine, config: BotConfig) -> list[str]:
    """Load every variant the A/B split sends sessions to, adapters included: an arm that
    can't be served would fail each of its (sticky) users on every turn. Returns them."""
    from chatbot.errors import ModelError

    if not config.ab.enabled:
        return []
    arms = [name for name, weight in config.ab_split.items() if weight > 0]
    for name in arms:
        try:
            engine.generator_for(engine.variant(name))
        except ModelError as exc:
            raise ModelError(f"A/B variant {name!r} can't be served: {exc}; fix it, or give it "
                             "weight 0 in ab.weights") from None
    return arms


COMMANDS = [serve]

