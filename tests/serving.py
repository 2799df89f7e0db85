"""A real `chatbot serve` in a subprocess, for tests that need the whole server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).parents[1]
CHROMIUM = "/usr/bin/chromium"
"""Debian's chromium, which Playwright drives in the browser tests."""
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-quic"]



@contextmanager
def phone_page(url: str) -> Iterator:
    """A Chromium page 400 pixels wide (a phone) opened at ``url``; closed with its browser."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 400, "height": 800})
            page.goto(url)
            yield page
        finally:
            browser.close()

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, server: subprocess.Popen, seconds: float = 90) -> None:
    """Until ``url`` answers 200; a server that exits first fails with its output."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError("chatbot serve exited:\n" + server.stdout.read())
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"{url} did not answer in {seconds} s")


@contextmanager
def chatbot_serve(config_path: Path, *args: str, data_dir: Path | None = None,
                  env: dict[str, str] | None = None) -> Iterator[tuple[str, subprocess.Popen]]:
    """(base URL, process) of `chatbot serve --config config_path` on a free local port;
    ``data_dir`` overrides the inherited ``CHATBOT_DATA_DIR``, ``env`` adds variables."""
    port = free_port()
    env = dict(os.environ, **(env or {}),
               **({"CHATBOT_DATA_DIR": str(data_dir)} if data_dir else {}))
    server = subprocess.Popen(
        [sys.executable, "-m", "app", "serve", "--config", str(config_path),
         "--port", str(port), *args], cwd=REPO, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(f"http://127.0.0.1:{port}/", server)
        yield f"http://127.0.0.1:{port}", server
    finally:
        if server.poll() is None:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler for a server that misbehaves on purpose: GET is a 404 unless the
    test says otherwise, and nothing is logged to the test's output."""

    def do_GET(self) -> None:
        self.send_error(404)

    def asked_to_chat(self) -> bool:
        """Read the request's body; anything but a chat completion (the bot's /tokenize or
        /models question) gets a 404 and ``False``."""
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path.endswith("/chat/completions"):
            return True
        self.send_error(404)
        return False

    def reply(self, status: int, body: bytes = b"", content_type: str | None = None,
              headers: dict[str, str] | None = None) -> None:
        """One whole response: ``status``, ``headers``, and ``body`` with its length."""
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@contextmanager
def http_server(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """The /v1 URL of a plain HTTP server answering with ``handler``, on its own thread."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/v1"
    finally:
        server.shutdown()
