"""``chatbot adapters list|push``: the registered adapters, and serving one on a vLLM server.

    chatbot adapters list
    chatbot adapters push v2 --backend gpu [--as zorb-v2] [--server-path /models/adapters/v2]

``push`` loads a registered adapter into a running vLLM (started with
``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`` and ``--enable-lora``) through its runtime LoRA
endpoint ``POST /v1/load_lora_adapter``, after checking that the server serves the adapter's
base model and chat template; a ``chatbot serve`` started with ``CHATBOT_ALLOW_RUNTIME_LORA=true``
answers the same endpoint. docs/serving-backends.md shows the static ways (vLLM
``--lora-modules``, Ollama, llama.cpp).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import click
import httpx

from app.commands.common import BotConfig, InOrderGroup, in_section, one_line_errors, print_json, \
    with_config
from chatbot.adapters import AdapterManifest, registered_adapters, servable_manifest
from chatbot.errors import ConfigError, ModelError
from chatbot.models import chat_template_hash, model_fingerprint, same_base_model
from chatbot.paths import DataPaths
from chatbot.remote_check import backend_key, model_cards


@in_section("Training and evaluation")
@click.group("adapters", cls=InOrderGroup)
def adapters_group() -> None:
    """List registered adapters; push one to a vLLM server."""


@adapters_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
@with_config
@one_line_errors
def list_command(config: BotConfig, as_json: bool) -> None:
    """Registered adapters with their base model, method and creation time."""
    rows = [_row(name, path) for name, path in
            registered_adapters(DataPaths(config.data_path).adapters).items()]
    if as_json:
        print_json(rows)
    elif not rows:
        click.echo("no adapters yet; train one with `chatbot train --data DATASET --name NAME`")
    for row in [] if as_json else rows:
        click.echo(f"{row['name']}\t{row['problem']}" if row["problem"] else
                   f"{row['name']}\t{row['base_model']}\t{row['method']}\t{row['created_at']}")


def _row(name: str, path: Path) -> dict:
    """One adapter's line; a damaged one is listed with what is wrong (it is not served)."""
    try:
        manifest = servable_manifest(path)
    except ModelError as exc:
        return {"name": name, "base_model": None, "method": None, "created_at": None,
                "path": str(path), "problem": f"not served: {exc}"}
    return {"name": name, "base_model": manifest.base_model, "method": manifest.method,
            "created_at": manifest.created_at, "path": str(path), "problem": None}


@adapters_group.command("push")
@click.argument("name")
@click.option("--backend", "backend_name", required=True,
              help="The server, a name under `backends:` in the config.")
@click.option("--as", "served_name", help="Name the server serves it under [default: NAME].")
@click.option("--server-path",
              help="The adapter directory as the server sees it [default: its absolute path "
                   "here, for a server on this machine or a shared filesystem].")
@click.option("--force", is_flag=True,
              help="Skip the base model check, for a server whose base model name says "
                   "nothing about its weights (a renamed directory only the server sees).")
@with_config
@one_line_errors
def push_command(config: BotConfig, name: str, backend_name: str, served_name: str | None,
                 server_path: str | None, force: bool) -> None:
    """Make a registered adapter servable by a running vLLM (runtime LoRA loading)."""
    adapter_dir = _registered(config, name)
    manifest = servable_manifest(adapter_dir)  # a folder copied in part is refused here
    server = _server(config, backend_name)
    click.echo(_prompt_template_line(name, manifest))
    base, line = _base_card(server, manifest, name, force)
    click.echo(line)
    click.echo(_chat_template_line(name, manifest, base))
    served = served_name or name
    lora_path = server_path or str(adapter_dir.resolve())
    server.load(served, lora_path, _lora_rank(adapter_dir))
    click.echo(f"backend {backend_name!r} now serves adapter {name!r} as model {served!r} "
               f"(from {lora_path}); to chat with it, add to the config:")
    click.echo(f"  variants: {{{name}: {_variant_spec(backend_name, served, manifest)}}}")


@dataclass(frozen=True)
class LoraServer:
    """A backend's runtime LoRA endpoints, with the error messages that say what to do."""

    name: str
    base_url: str
    api_key_env: str | None
    timeout_s: float

    def models(self) -> list[dict]:
        response = self._send("GET", "models")
        if response.status_code != 200:
            raise self._failure(response, "listing its models")
        cards = model_cards(response)
        if cards is None:
            raise ModelError(f"{self._where()} answered /models with no model list; check "
                             f"that backends.{self.name}.base_url ends in /v1")
        return cards

    def load(self, served: str, lora_path: str, rank: int | None) -> None:
        response = self._send("POST", "load_lora_adapter",
                              {"lora_name": served, "lora_path": lora_path})
        if response.status_code == 200:
            return
        message = _server_message(response)
        if response.status_code == 404 and not _is_openai_error(response):
            raise ModelError(self._no_runtime_lora(served, lora_path, rank))
        if response.status_code == 404:
            raise ModelError(f"{self._where()} found no adapter at {lora_path} ({message}); "
                             "pass --server-path with the adapter directory as the server "
                             "sees it")
        if response.status_code == 400 and "already" in message:
            raise ModelError(f"{self._where()} already serves an adapter named {served!r} "
                             f"({message}); push it --as another name, or unload the old one "
                             f"first: POST {self.base_url}/unload_lora_adapter "
                             f'{{"lora_name": "{served}"}}')
        if response.status_code == 400:
            raise ModelError(f"{self._where()} refused the adapter at {lora_path}: {message}; "
                             "check that it is the adapter directory as the server sees it "
                             "(--server-path)")
        raise self._failure(response, "loading the adapter")

    def _send(self, method: str, path: str, body: dict | None = None) -> httpx.Response:
        key = backend_key(self.name, self.api_key_env)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        try:
            return httpx.request(method, f"{self.base_url}/{path}", json=body, headers=headers,
                                 timeout=self.timeout_s)
        except httpx.HTTPError as exc:
            raise ModelError(f"{self._where()} is unreachable ({exc}); check that the server "
                             f"is running and backends.{self.name}.base_url") from None

    def _failure(self, response: httpx.Response, doing: str) -> ModelError:
        status, message = response.status_code, _server_message(response)
        if status in (401, 403):
            key = (f"${self.api_key_env} (backends.{self.name}.api_key_env)"
                   if self.api_key_env else f"backends.{self.name}.api_key_env (none is set)")
            return ModelError(f"{self._where()} refused the API key (HTTP {status}: {message});"
                              f" check {key}")
        return ModelError(f"{self._where()} failed {doing} (HTTP {status}: {message}); check "
                          "the server's log")

    def _no_runtime_lora(self, served: str, lora_path: str, rank: int | None) -> str:
        rank_flag = f" --max-lora-rank {rank}" if rank else ""
        return (f"{self._where()} has no runtime LoRA loading (HTTP 404 on "
                "/v1/load_lora_adapter); start vLLM with VLLM_ALLOW_RUNTIME_LORA_UPDATING=True "
                f"and --enable-lora{rank_flag} (a chatbot serve: CHATBOT_ALLOW_RUNTIME_LORA=true)"
                f", or serve it statically: vllm serve BASE --enable-lora{rank_flag} "
                f"--lora-modules {served}={lora_path}")

    def _where(self) -> str:
        return f"backend {self.name!r} ({self.base_url})"


def _registered(config: BotConfig, name: str) -> Path:
    root = DataPaths(config.data_path).adapters
    found = registered_adapters(root)
    if name not in found:
        raise ModelError(f"no registered adapter {name!r} under {root} (registered: "
                         f"{', '.join(found) or 'none'}); train one with "
                         f"`chatbot train --data DATASET --name {name}`")
    return found[name]


def _server(config: BotConfig, name: str) -> LoraServer:
    if name not in config.backends:
        raise ConfigError(f"backend {name!r} is not declared under backends (declared: "
                          f"{', '.join(config.backends) or 'none'}); add it as "
                          "docs/serving-backends.md shows")
    spec = config.backends[name]
    return LoraServer(name, spec.base_url, spec.api_key_env, spec.timeout_s)


def _base_card(server: LoraServer, manifest: AdapterManifest, name: str,
               force: bool) -> tuple[dict | None, str]:
    """The server's card of the adapter's base model and a line saying so; an error naming
    both when the server serves another one, unless ``force``."""
    bases = [card for card in server.models() if not (card.get("parent") or card.get("adapter"))]
    match = next((card for card in bases if any(_same_base(manifest, served)
                                                for served in _names(card))), None)
    if match is not None:
        return match, f"base model: {manifest.base_model!r} is served as {match.get('id')!r}"
    if force:
        return (bases[0] if bases else None,
                f"base model: not checked (--force); the adapter was trained on "
                f"{manifest.base_model!r}")
    served = "; ".join(" = ".join(dict.fromkeys(_names(card))) for card in bases) or "nothing"
    raise ModelError(f"adapter {name!r} was trained on base model {manifest.base_model!r}, but "
                     f"backend {server.name!r} serves {served}; start the server on "
                     f"{manifest.base_model!r}, push to a backend that serves it, or pass "
                     "--force if it is the same model under another name")


def _names(card: dict) -> list[str]:
    """What a base card calls its model: vLLM's ``id`` and ``root`` (the path or hub id it
    loaded), a chatbot-builder's ``id`` (a variant) and ``base_model``."""
    return [str(card[key]) for key in ("id", "root", "base_model") if card.get(key)]


def _same_base(manifest: AdapterManifest, served: str) -> bool:
    """The same hub id; a directory this machine also sees, by fingerprint (its weights);
    otherwise the same directory name (``/models/Qwen2.5-7B-Instruct`` is
    ``Qwen/Qwen2.5-7B-Instruct``)."""
    base = manifest.base_model or ""
    if served == base:
        return True
    local = Path(served)
    if local.is_absolute() and local.is_dir():
        return same_base_model(manifest.base_model_fingerprint, model_fingerprint(local))
    return _dir_name(served) == _dir_name(base) != ""


def _dir_name(model: str) -> str:
    return Path(model.rstrip("/")).name.lower()


def _prompt_template_line(name: str, manifest: AdapterManifest) -> str:
    """The adapter's prompt template must still render as in training: the bot renders it."""
    from chatbot.prompts import load_template

    if manifest.template is None or manifest.template_hash is None:
        return "prompt template: none recorded in the adapter's manifest, not checked"
    current = load_template(manifest.template).hash
    if current != manifest.template_hash:
        raise ModelError(f"adapter {name!r} was trained with prompt template "
                         f"{manifest.template!r} at hash {manifest.template_hash}, but it is now "
                         f"{current}: the variant would prompt differently from training; "
                         "restore the template or retrain the adapter")
    return f"prompt template: {manifest.template!r} matches the adapter's training"


def _chat_template_line(name: str, manifest: AdapterManifest, base: dict | None) -> str:
    """The served base's chat template against the adapter's, when its tokenizer loads here
    (a directory this machine sees, or a cached hub id); the server applies that template."""
    for served in _names(base or {}):
        tokenizer = _local_tokenizer(served)
        if tokenizer is None:
            continue
        if chat_template_hash(tokenizer) != manifest.chat_template_hash:
            raise ModelError(f"adapter {name!r} was trained with another chat template than "
                             f"{served!r} has ({manifest.chat_template_hash} vs "
                             f"{chat_template_hash(tokenizer)}); serve the base model with the "
                             "tokenizer the adapter was trained on, or retrain it")
        return f"chat template: matches the tokenizer of {served}"
    return ("chat template: not checked (no tokenizer of the served base model loads here); "
            "the server must use the tokenizer the adapter was trained with")


def _local_tokenizer(model: str):
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    try:
        return AutoTokenizer.from_pretrained(model, local_files_only=True)
    except (OSError, ValueError):
        return None


def _lora_rank(adapter_dir: Path) -> int | None:
    """The adapter's LoRA rank, for vLLM's ``--max-lora-rank`` (16 unless raised)."""
    try:
        return int(json.loads((adapter_dir / "adapter_config.json").read_text())["r"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _variant_spec(backend: str, served: str, manifest: AdapterManifest) -> str:
    template = f", template: {manifest.template}" if manifest.template else ""
    return f"{{backend: {backend}, model: {served}{template}}}"


def _server_message(response: httpx.Response) -> str:
    """The server's own words: OpenAI's ``error.message``, vLLM's older flat ``message``, or
    FastAPI's ``detail``."""
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()
        if text.startswith("<"):  # a web page: not an OpenAI-compatible API at this URL
            return (f"{response.reason_phrase}, as a web page, not an API answer: check that "
                    "base_url is the server's /v1 URL")
        return text[:300] or response.reason_phrase
    if isinstance(body, dict):
        inner = body.get("error") if isinstance(body.get("error"), dict) else body
        for key in ("message", "detail"):
            if isinstance(inner.get(key), str):
                return inner[key]
    return str(body)[:300]


def _is_openai_error(response: httpx.Response) -> bool:
    """An error the endpoint itself sent, not a 404 for a route the server does not have."""
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and (isinstance(body.get("error"), dict)
                                       or "message" in body)


COMMANDS = [adapters_group]
