"""`chatbot adapters push` against a real server: a second `chatbot serve` on the tiny model, with
runtime LoRA loading on, plays vLLM, so the push, the load and the chat all cross real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from click.testing import CliRunner, Result

from app.api_adapters import ADAPTER_FILES, ALLOW_ENV
from app.cli import main
from chatbot.adapters import AdapterManifest
from lora import save_lora_adapter
from tests.serving import QuietHandler, chatbot_serve, http_server
from tests.test_remote import REMOTE_KEY, write_bot_config, write_remote_config
from train_support import make_tiny_model

QUESTION = "Which port does Zorb use?"
AUTH = {"Authorization": f"Bearer {REMOTE_KEY}"}


def register_adapter(data_dir: Path, base_dir: Path, name: str = "ft") -> Path:
    """A LoRA adapter on ``base_dir`` registered under ``data_dir`` as `chatbot train` leaves
    it: weights plus a manifest naming its base model, chat template and prompt template."""
    from transformers import AutoTokenizer

    from chatbot.models import chat_template_hash, model_fingerprint
    from chatbot.prompts import load_template

    target = save_lora_adapter(base_dir, data_dir / "adapters" / name)
    AdapterManifest(name=name, method="lora", base_model=str(base_dir),
                    base_model_fingerprint=model_fingerprint(base_dir),
                    chat_template_hash=chat_template_hash(AutoTokenizer.from_pretrained(base_dir)),
                    template="plain", template_hash=load_template("plain").hash,
                    created_at="2025-01-01T00:00:00+00:00").save(target)
    return target


@pytest.fixture(scope="module")
def lora_remote(tiny_model_dir: Path,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """(the /v1 URL of a remote that allows runtime LoRA loading, its config)."""
    root = tmp_path_factory.mktemp("lora-remote")
    config = write_remote_config(root, tiny_model_dir)
    with chatbot_serve(config, data_dir=root / "data",
                       env={"CHATBOT_API_KEY": REMOTE_KEY, ALLOW_ENV: "true"}) as (url, _):
        yield f"{url}/v1", config


def push(config: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["adapters", "push", *args, "--config", str(config)])


def local_answer(remote_config: Path, base_dir: Path, adapter: Path) -> str:
    """The adapter's greedy answer here, through the engine as the remote's default variant
    (`plain`, no retrieval) runs it."""
    from app.build import build_engine
    from chatbot.config_file import load_config
    from chatbot.variants import Variant

    variant = Variant("here", str(base_dir), "plain", False, None, adapter)
    engine = build_engine(load_config(remote_config), lambda query, k: [], log=False,
                          extra_variants={"here": variant})
    return engine.answer("s1", QUESTION, "here").result().text


def test_a_pushed_adapter_answers_on_the_server_as_it_does_here(
        lora_remote, tiny_model_dir, tmp_path, monkeypatch) -> None:
    url, remote_config = lora_remote
    monkeypatch.setenv("TEST_REMOTE_KEY", REMOTE_KEY)
    adapter = register_adapter(tmp_path / "data", tiny_model_dir)
    config = write_bot_config(tmp_path, url)
    result = push(config, "ft", "--backend", "remote", "--as", "ft-remote")
    assert result.exit_code == 0, result.output
    assert "chat template: matches the tokenizer of" in result.output
    assert "variants: {ft: {backend: remote, model: ft-remote, template: plain}}" in result.output
    client = openai.OpenAI(base_url=url, api_key=REMOTE_KEY, max_retries=0, timeout=60)
    assert "ft-remote" in [model.id for model in client.models.list().data]
    ask = [{"role": "user", "content": QUESTION}]
    served = client.chat.completions.create(model="ft-remote", messages=ask)
    base = client.chat.completions.create(model="echo", messages=ask)
    answer = served.choices[0].message.content
    assert answer == local_answer(remote_config, tiny_model_dir, adapter) != ""
    assert answer != base.choices[0].message.content  # the adapter really is applied

    again = push(config, "ft", "--backend", "remote", "--as", "ft-remote")
    assert again.exit_code == 1
    assert "already serves an adapter named 'ft-remote'" in again.output
    assert "push it --as another name, or unload the old one first" in again.output
    gone = httpx.post(f"{url}/unload_lora_adapter", json={"lora_name": "ft-remote"},
                      headers=AUTH)
    assert gone.status_code == 200
    assert "ft-remote" not in [model.id for model in client.models.list().data]


def test_an_adapter_of_another_base_model_is_refused_naming_both(
        lora_remote, tiny_model_dir, tmp_path, monkeypatch) -> None:
    url, _ = lora_remote
    monkeypatch.setenv("TEST_REMOTE_KEY", REMOTE_KEY)
    other = make_tiny_model(tmp_path / "other-base", seed=1)
    adapter = register_adapter(tmp_path / "data", other, "other")
    result = push(write_bot_config(tmp_path, url), "other", "--backend", "remote")
    assert result.exit_code == 1
    assert (f"error: adapter 'other' was trained on base model '{other}', but backend "
            f"'remote' serves echo = {tiny_model_dir}; start the server on") in result.output
    # the server checks too, whoever calls it
    direct = httpx.post(f"{url}/load_lora_adapter", headers=AUTH,
                        json={"lora_name": "other", "lora_path": str(adapter)})
    assert direct.status_code == 400
    assert "was trained on base model" in direct.json()["error"]["message"]


def test_a_server_without_runtime_lora_gets_the_clear_message(
        tiny_model_dir, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TEST_REMOTE_KEY", REMOTE_KEY)
    adapter = register_adapter(tmp_path / "data", tiny_model_dir)
    (tmp_path / "remote").mkdir()
    remote_config = write_remote_config(tmp_path / "remote", tiny_model_dir)
    with chatbot_serve(remote_config, data_dir=tmp_path / "remote" / "data",
                       env={"CHATBOT_API_KEY": REMOTE_KEY}) as (url, _):
        result = push(write_bot_config(tmp_path, f"{url}/v1"), "ft", "--backend", "remote")
    assert result.exit_code == 1
    assert ("has no runtime LoRA loading (HTTP 404 on /v1/load_lora_adapter); start vLLM with "
            "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True and --enable-lora --max-lora-rank 4 "
            "(a chatbot serve: CHATBOT_ALLOW_RUNTIME_LORA=true), or serve it statically: "
            f"vllm serve BASE --enable-lora --max-lora-rank 4 --lora-modules ft={adapter}"
            ) in result.output


NOT_AN_ADAPTER = ("is not an adapter directory on this server; give the absolute path, on this "
                  "server, of a directory written by `chatbot train`, which holds "
                  "adapter_manifest.json, adapter_config.json and adapter_model.safetensors")


@pytest.mark.parametrize("path, error", [
    ("relative/adapter", "lora_path 'relative/adapter' is not an absolute path; give the absolute "
                         "path, on this server, of a directory written by `chatbot train`"),
    ("/nonexistent/adapter", f"lora_path '/nonexistent/adapter' {NOT_AN_ADAPTER}"),
    ("{tmp}", f"lora_path '{{tmp}}' {NOT_AN_ADAPTER}"),
    ("{tmp}/pickled", f"lora_path '{{tmp}}/pickled' {NOT_AN_ADAPTER}"),
    ("{tmp}/pickled/adapter_config.json",
     f"lora_path '{{tmp}}/pickled/adapter_config.json' {NOT_AN_ADAPTER}"),
])
def test_a_load_request_for_anything_but_an_adapter_directory_is_a_400(
        lora_remote, tmp_path, path, error) -> None:
    """Whether the path exists, is a file or a folder, and which files it holds, is the
    server's to know: a caller can't map the server's disk with these requests."""
    url, _ = lora_remote
    pickled = tmp_path / "pickled"  # weights as a pickle, which loading could run
    pickled.mkdir()
    for name in ("adapter_manifest.json", "adapter_config.json", "adapter_model.bin"):
        (pickled / name).write_text("{}")
    response = httpx.post(f"{url}/load_lora_adapter", headers=AUTH,
                          json={"lora_name": "x", "lora_path": path.format(tmp=tmp_path)})
    assert response.status_code == 400
    assert response.json()["error"]["message"] == error.format(tmp=tmp_path)


def test_a_refused_adapter_is_named_as_the_caller_named_it(lora_remote, tmp_path) -> None:
    """Not by the folder a link leads to, nor by the folder of an adapter that an earlier
    request loaded: those are paths of the server's the caller did not send."""
    url, _ = lora_remote
    hidden = tmp_path / "hidden-store" / "v2"
    hidden.mkdir(parents=True)
    for name in ADAPTER_FILES:
        (hidden / name).write_text("{")  # a damaged manifest
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "v2").symlink_to(hidden)
    response = httpx.post(f"{url}/load_lora_adapter", headers=AUTH,
                          json={"lora_name": "x", "lora_path": str(tmp_path / "shared" / "v2")})
    assert response.status_code == 400
    message = response.json()["error"]["message"]
    assert str(tmp_path / "shared" / "v2") in message and "hidden-store" not in message, message


def test_a_name_loaded_before_is_refused_without_naming_its_folder(lora_remote, tiny_model_dir,
                                                                   tmp_path) -> None:
    url, _ = lora_remote
    first = register_adapter(tmp_path / "first", tiny_model_dir, "once")
    second = register_adapter(tmp_path / "second", tiny_model_dir, "once")
    for path, route in ((first, "load_lora_adapter"), (None, "unload_lora_adapter")):
        body = {"lora_name": "once"} | ({"lora_path": str(path)} if path else {})
        assert httpx.post(f"{url}/{route}", headers=AUTH, json=body,
                          timeout=60).status_code == 200
    refused = httpx.post(f"{url}/load_lora_adapter", headers=AUTH, timeout=60,
                         json={"lora_name": "once", "lora_path": str(second)})
    assert refused.status_code == 400
    assert refused.json()["error"]["message"] == (
        "lora_name 'once' named another adapter directory since this server started; load this "
        "one under another lora_name, or restart the server")


def test_the_load_routes_need_the_credential_and_unload_only_what_they_loaded(
        lora_remote) -> None:
    url, _ = lora_remote
    body = {"lora_name": "echo"}
    assert httpx.post(f"{url}/unload_lora_adapter", json=body).status_code == 401
    refused = httpx.post(f"{url}/unload_lora_adapter", json=body, headers=AUTH)
    assert refused.status_code == 404
    assert refused.json()["error"]["message"] == "The lora adapter 'echo' cannot be found."


@pytest.mark.parametrize("served, same", [
    ("Qwen/Qwen2.5-7B-Instruct", True),
    ("/models/Qwen2.5-7B-Instruct", True),  # a directory only the server sees: by name
    ("Qwen/Qwen2.5-1.5B-Instruct", False),
    ("{tmp}/Qwen2.5-7B-Instruct", False),  # a directory seen here: by its weights
])
def test_the_base_model_is_the_same_by_id_name_or_weights(tmp_path, served, same) -> None:
    from app.commands.adapters import _same_base

    (tmp_path / "Qwen2.5-7B-Instruct").mkdir()
    manifest = AdapterManifest(base_model="Qwen/Qwen2.5-7B-Instruct",
                               base_model_fingerprint="trained-on-these-weights")
    assert _same_base(manifest, served.format(tmp=tmp_path)) is same


def test_an_adapter_registered_while_the_server_runs_is_served_without_a_restart(
        lora_remote, tiny_model_dir) -> None:
    url, config = lora_remote
    client = openai.OpenAI(base_url=url, api_key=REMOTE_KEY)
    assert "late.v2" not in [m.id for m in client.models.list().data]
    register_adapter(config.parent / "data", tiny_model_dir, name="late.v2")  # `chatbot train`
    reply = client.chat.completions.create(model="late.v2", max_tokens=4,
                                           messages=[{"role": "user", "content": QUESTION}])
    assert reply.choices[0].message.content
    assert "late.v2" in [m.id for m in client.models.list().data]


def test_a_url_that_answers_with_web_pages_says_to_check_base_url(tiny_model_dir,
                                                                  tmp_path) -> None:
    """A base_url that reaches a web server, not an OpenAI-compatible API: no page of HTML
    in the message, but what to check."""
    import threading
    from functools import partial
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    register_adapter(tmp_path / "data", tiny_model_dir)
    (tmp_path / "www").mkdir()
    site = ThreadingHTTPServer(("127.0.0.1", 0),
                               partial(SimpleHTTPRequestHandler, directory=tmp_path / "www"))
    threading.Thread(target=site.serve_forever, daemon=True).start()
    try:
        result = push(write_bot_config(tmp_path, f"http://127.0.0.1:{site.server_port}/v1"),
                      "ft", "--backend", "remote")
    finally:
        site.shutdown()
    assert result.exit_code == 1 and "<" not in result.output
    assert ("(HTTP 404: File not found, as a web page, not an API answer: check that base_url "
            "is the server's /v1 URL)") in result.output


@pytest.mark.parametrize("models", [{"data": ["model-a"]}, {"data": "model-a"}])
def test_a_model_list_of_mere_names_says_to_check_base_url(tiny_model_dir, tmp_path,
                                                           models) -> None:
    """A server whose /models lists names, not OpenAI's model objects, is no vLLM: one line,
    not an AttributeError traceback."""
    import json

    class Names(QuietHandler):
        def do_GET(self) -> None:
            self.reply(200, json.dumps(models).encode(), "application/json")

    register_adapter(tmp_path / "data", tiny_model_dir)
    with http_server(Names) as url:
        result = push(write_bot_config(tmp_path, url), "ft", "--backend", "remote")
    assert result.exit_code == 1 and result.output.splitlines()[-1] == (
        f"error: backend 'remote' ({url}) answered /models with no model list; check that "
        "backends.remote.base_url ends in /v1")
