"""An answer nobody waits for any more stops at once and never holds the model: a closed tab,
an API client that leaves mid-stream or before its answer starts, a server stopped or killed.

Each test runs the real `chatbot serve` on a small random model that would talk for half a
minute, so an answer that is not stopped is seen to go on.
"""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from chatbot.logs import ConversationLog
from serving import CHROMIUM, CHROMIUM_ARGS, chatbot_serve

QUESTION = "Explain in detail how indexing works."
STOPS_WITHIN_S = 10.0
"""How soon an abandoned answer must be logged ``interrupted`` (CI machines are busy)."""


@pytest.fixture(scope="module")
def talkative_model_dir(tmp_path_factory) -> Path:
    """A 4-layer Llama that never emits end-of-sequence: every answer runs to max_new_tokens."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from chatbot.config import EMBEDDED_CHAT_MODEL
    from chatbot.models import resolve_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_model(EMBEDDED_CHAT_MODEL))
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=256, intermediate_size=1024,
                         num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=4096, tie_word_embeddings=True,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=None)
    torch.manual_seed(0)
    target = tmp_path_factory.mktemp("talkative-model")
    LlamaForCausalLM(config).save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


def write_config(folder: Path, model_dir: Path) -> Path:
    path = folder / "bot.yaml"
    path.write_text(yaml.safe_dump({
        "name": "talkative-bot", "models": {"chat": str(model_dir), "embedder": "hash:64"},
        "generation": {"max_new_tokens": 3000}, "index": {"paths": [str(folder / "docs")]}}))
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory, talkative_model_dir):
    """(base URL, logs.sqlite) of one server shared by the tests that leave it running."""
    folder = tmp_path_factory.mktemp("talkative-bot")
    with chatbot_serve(write_config(folder, talkative_model_dir),
                       data_dir=folder / "data") as (url, _):
        yield url, folder / "data" / "logs.sqlite"


def last_answer(log_path: Path, session: str | None = None) -> tuple[str, str]:
    """(status, text) of the newest logged answer, of ``session`` if given."""
    where, params = ("AND session_id = ?", (session,)) if session else ("", ())
    with sqlite3.connect(log_path) as db:
        return db.execute(f"SELECT status, text FROM turns WHERE role = 'assistant' {where} "
                          "ORDER BY id DESC LIMIT 1", params).fetchone()


def wait_until_settled(log_path: Path, session: str | None = None,
                       seconds: float = STOPS_WITHIN_S) -> tuple[str, str, float]:
    """(status, text, seconds waited) once the newest answer is no longer ``pending``."""
    started = time.monotonic()
    while (answer := last_answer(log_path, session))[0] == "pending":
        assert time.monotonic() - started < seconds, f"still generating after {seconds} s"
        time.sleep(0.05)
    return *answer, time.monotonic() - started


def quick_answer(base_url: str) -> str:
    """A short answer through the API: the model is free for the next user."""
    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key="none", timeout=30, max_retries=0)
    reply = client.chat.completions.create(model="prompt", max_tokens=4,
                                           messages=[{"role": "user", "content": "Hi"}])
    return reply.choices[0].finish_reason


def answer_streaming(base_url: str, session: str) -> Iterator:
    """The openai client's stream of a long answer in ``session``, two pieces read."""
    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key="none", timeout=60, max_retries=0)
    stream = iter(client.chat.completions.create(
        model="prompt", stream=True, messages=[{"role": "user", "content": QUESTION}],
        extra_headers={"X-Session-Id": session}))
    next(stream), next(stream)
    return stream


@pytest.mark.browser
@pytest.mark.skipif(not os.path.exists(CHROMIUM),
                    reason="chromium missing: apt-get install chromium")
def test_closing_the_tab_mid_answer_stops_it_and_frees_the_model(server) -> None:
    from playwright.sync_api import expect, sync_playwright

    url, log_path = server
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(url)
            box = page.locator("#cb-message textarea")
            box.fill(QUESTION)
            box.press("Enter")
            bubble = page.locator('#cb-chat [data-testid="bot"]').last
            expect(bubble).not_to_be_empty(timeout=90_000)  # a loaded 2-core machine took over 30 s
            shown = bubble.inner_text()
            page.close()
        finally:
            browser.close()
    status, text, _ = wait_until_settled(log_path)
    assert status == "interrupted" and text.startswith(shown.strip()[:20])
    assert quick_answer(url) == "length"


def test_an_api_client_that_leaves_mid_stream_stops_its_answer(server) -> None:
    url, log_path = server
    body = {"model": "prompt", "stream": True,
            "messages": [{"role": "user", "content": QUESTION}]}
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=60,
                      headers={"X-Session-Id": "leaves-mid-stream"}) as response:
        next(line for line in response.iter_lines() if '"content": "' in line)
    status, text, _ = wait_until_settled(log_path, "leaves-mid-stream")
    assert status == "interrupted" and text
    assert quick_answer(url) == "length"


def test_a_client_that_leaves_before_its_answer_is_ready_stops_it(server) -> None:
    url, log_path = server
    body = {"model": "prompt", "messages": [{"role": "user", "content": QUESTION}]}
    with pytest.raises(httpx.ReadTimeout):  # a non-streamed answer: nothing comes until the end
        httpx.post(f"{url}/v1/chat/completions", json=body, timeout=1.5,
                   headers={"X-Session-Id": "leaves-early"})
    status, _, _ = wait_until_settled(log_path, "leaves-early")
    assert status == "interrupted"
    assert quick_answer(url) == "length"


def read_for(response: httpx.Response, seconds: float) -> str:
    """The answer text a streaming API client receives in ``seconds`` from its first token
    (the stream begins before it, while the prompt is read)."""
    received, started = "", None
    for line in response.iter_lines():
        if line.startswith("data: {") and '"content": "' in line:
            received += json.loads(line[6:])["choices"][0]["delta"]["content"]
            started = started or time.monotonic()
        if started and time.monotonic() - started > seconds:
            return received
    raise AssertionError("the answer ended before the test could stop the server")


def ask_streaming(url: str, session: str):
    body = {"model": "prompt", "stream": True,
            "messages": [{"role": "user", "content": QUESTION}]}
    return httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=60,
                        headers={"X-Session-Id": session})


def test_a_killed_server_loses_at_most_the_last_second_of_an_answer(
        tmp_path, talkative_model_dir) -> None:
    config = write_config(tmp_path, talkative_model_dir)
    log_path = tmp_path / "data" / "logs.sqlite"
    with chatbot_serve(config, data_dir=tmp_path / "data") as (url, process):
        with ask_streaming(url, "killed") as response:
            received = read_for(response, 3.0)
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
    status, saved = last_answer(log_path, "killed")
    assert status == "pending" and saved and received.startswith(saved)
    ConversationLog(log_path).close()  # as the next start does, it marks the orphan
    assert last_answer(log_path, "killed") == ("interrupted", saved)


def test_sigterm_stops_the_server_mid_answer_and_logs_it(tmp_path, talkative_model_dir) -> None:
    config = write_config(tmp_path, talkative_model_dir)
    log_path = tmp_path / "data" / "logs.sqlite"
    with chatbot_serve(config, data_dir=tmp_path / "data") as (url, process):
        with ask_streaming(url, "terminated") as response:
            read_for(response, 1.0)
            process.terminate()
            process.wait(timeout=15)  # uvicorn exits by re-raising the signal it handled
    backup = tmp_path / "backup.sqlite"  # the file alone, as a plain copy takes it
    backup.write_bytes(log_path.read_bytes())
    assert last_answer(backup, "terminated")[0] == "interrupted"


def test_a_stopping_server_ends_an_open_stream_with_an_error_the_client_reads(
        tmp_path, talkative_model_dir) -> None:
    """Ctrl-C while an answer streams and a web page is open: the answer gets a few seconds,
    then ends with an error event the openai client raises, and the page's heartbeat stream
    ends, instead of both being cut off with a traceback."""
    config = write_config(tmp_path, talkative_model_dir)
    log_path = tmp_path / "data" / "logs.sqlite"
    with chatbot_serve(config, data_dir=tmp_path / "data") as (url, process), \
            httpx.stream("GET", f"{url}/gradio_api/heartbeat/open-page", timeout=60) as page:
        assert next(page.iter_lines()) == "data: ALIVE"
        stream = answer_streaming(url, "stopping")
        process.send_signal(signal.SIGINT)
        with pytest.raises(openai.APIError, match=r"^the server is shutting down"):
            for _ in stream:
                pass
        output, _ = process.communicate(timeout=30)
    assert "Traceback" not in output and "ERROR" not in output, output
    assert last_answer(log_path, "stopping")[0] == "interrupted"


def test_a_second_ctrl_c_stops_the_answers_at_once_in_one_line_and_logs_them(
        tmp_path, talkative_model_dir) -> None:
    """Ctrl-C pressed again while the server waits for an answer: the answer is stopped then
    and there, its reader told the server is shutting down, the turn logged in the log file
    itself, and the server says so in one line, where uvicorn's forced exit printed its
    tracebacks and skipped the log's last write."""
    config = write_config(tmp_path, talkative_model_dir)
    log_path = tmp_path / "data" / "logs.sqlite"
    with chatbot_serve(config, data_dir=tmp_path / "data") as (url, process), \
            httpx.stream("GET", f"{url}/gradio_api/heartbeat/open-page", timeout=60) as page:
        stream = answer_streaming(url, "twice")
        process.send_signal(signal.SIGINT)
        page.read()  # the page's heartbeats end: the server has begun to stop
        process.send_signal(signal.SIGINT)
        with pytest.raises(openai.APIError, match=r"^the server is shutting down"):
            for _ in stream:
                pass
        output, _ = process.communicate(timeout=30)
    said = [line for line in output.splitlines()[3:] if line]  # after the lines of its start
    assert said == ["stopping now: the answers still running end here, logged as "
                    "interrupted", "stopped"], output
    assert process.returncode == 0  # Ctrl-C is how a server is stopped: not a failure
    backup = tmp_path / "backup.sqlite"  # the file alone, as a plain copy takes it
    backup.write_bytes(log_path.read_bytes())
    assert last_answer(backup, "twice")[0] == "interrupted"


@dataclass
class Interrupted:
    """A command sent Ctrl-C mid-answer: what it printed and wrote on stderr so far, each pipe
    read by one thread of its own, so no character of one goes to another reader."""

    process: subprocess.Popen
    shown: list[str]
    errors: list[str]
    readers: list[threading.Thread]

    def ended(self) -> str:
        """What the process wrote on stderr, once it has exited and both pipes are read."""
        self.process.stdin.close()
        self.process.wait(timeout=60)
        for reader in self.readers:
            reader.join(timeout=30)
        return "".join(self.errors)


def ctrl_c_mid_answer(tmp_path: Path, model_dir: Path, *command: str, typed: str = "",
                      answer_after: str = "") -> Interrupted:
    """A ``chatbot`` command run on the talkative model, with ``typed`` on its input and
    SIGINT sent once 20 characters of its answer (printed after ``answer_after``) are out."""
    config = write_config(tmp_path, model_dir)
    process = subprocess.Popen(
        [sys.executable, "-m", "app", *command, "--config", str(config)],
        env={**os.environ, "CHATBOT_DATA_DIR": str(tmp_path / "data")},
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run = Interrupted(process, [], [], [])
    for pipe, into in ((process.stdout, run.shown), (process.stderr, run.errors)):
        reader = threading.Thread(target=lambda pipe=pipe, into=into: into.extend(
            iter(lambda: pipe.read(1), "")), daemon=True)
        reader.start()
        run.readers.append(reader)
    process.stdin.write(typed)
    process.stdin.flush()
    started = time.monotonic()
    while len("".join(run.shown).partition(answer_after)[2] if answer_after else run.shown) < 20:
        assert time.monotonic() - started < 120 and process.poll() is None, run.shown[-200:]
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    return run


def logged_as_shown(logged: str, shown: str) -> bool:
    """The log holds the answer as far as it was printed (20 characters at least), and at most
    the piece that was on its way to the screen when Ctrl-C came."""
    return len(shown) >= 20 and logged.startswith(shown)


def test_ctrl_c_mid_answer_in_the_terminal_chat_stops_that_answer_and_logs_it(
        tmp_path, talkative_model_dir) -> None:
    """The session goes on to the next question. Before, the process exited with the model
    still generating on its thread: torch aborted it ("terminate called without an active
    exception", a core dump) and the answer could be left pending."""
    run = ctrl_c_mid_answer(tmp_path, talkative_model_dir, "chat", typed=QUESTION + "\n",
                            answer_after="bot> ")
    status, text, _ = wait_until_settled(tmp_path / "data" / "logs.sqlite", seconds=30)
    run.process.stdin.write("/quit\n")
    run.process.stdin.flush()
    errors = run.ended()
    assert run.process.returncode == 0, errors
    answer = "".join(run.shown).partition("bot> ")[2].partition("\n")[0]
    assert status == "interrupted" and logged_as_shown(text, answer)
    assert "answer stopped" in errors and "terminate called" not in errors
    assert "Traceback" not in errors


def test_ctrl_c_mid_answer_of_ask_exits_once_the_answer_is_logged(
        tmp_path, talkative_model_dir) -> None:
    run = ctrl_c_mid_answer(tmp_path, talkative_model_dir, "ask", QUESTION)
    errors = run.ended()
    # the project's interrupt line, as `chatbot train` and `index sync` end, not click's "Aborted!"
    assert run.process.returncode == 1 and errors.endswith(
        "\nerror: interrupted; the answer so far is logged as interrupted\n"), errors
    assert "Traceback" not in errors and "terminate called" not in errors
    status, text = last_answer(tmp_path / "data" / "logs.sqlite")
    assert status == "interrupted" and logged_as_shown(text, "".join(run.shown).rstrip("\n"))


def test_ask_piped_to_a_reader_that_leaves_mid_answer_exits_quietly(
        tmp_path, talkative_model_dir) -> None:
    """`chatbot ask Q | head -c 20`: the answer stops and is logged interrupted. Before, the
    process exited with the model still generating: torch aborted it (exit 134, "terminate
    called without an active exception")."""
    config = write_config(tmp_path, talkative_model_dir)
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "ask", QUESTION, "--config", str(config)],
        env={**os.environ, "CHATBOT_DATA_DIR": str(tmp_path / "data")},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    shown = process.stdout.read(20)
    process.stdout.close()  # the reader leaves, as `head` does
    errors = process.stderr.read()
    process.wait(timeout=60)
    said = [line for line in errors.splitlines() if not line.startswith("note: nothing is")]
    assert process.returncode == 1 and said == [], errors
    status, text = last_answer(tmp_path / "data" / "logs.sqlite")
    assert status == "interrupted" and text.startswith(shown)
