"""The web page on a phone-sized screen in real Chromium. The server runs in-process (uvicorn).

Needs Debian's chromium at /usr/bin/chromium (./dev.sh test installs it).
"""

from pathlib import Path

import pytest

from app.server import create_server_app
from chatbot.config_file import load_config
from chatbot.engine import Engine
from chatbot.variants import Variant
from server_app import serving
from serving import CHROMIUM, CHROMIUM_ARGS

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                 reason="chromium missing: apt-get install chromium")]


def test_on_a_phone_the_message_box_is_wider_than_the_send_button(tmp_path, echo) -> None:
    """At 400 pixels the Send button took half the row and the box showed 'Type a question
    and press Enter' over two cramped lines."""
    from playwright.sync_api import sync_playwright

    config_file = tmp_path / "bot.yaml"
    config_file.write_text('models:\n  embedder: "hash:64"\n')
    engine = Engine({"prompt": Variant("prompt", "base", "plain", False)}, lambda m: echo)
    with serving(create_server_app(engine, load_config(config_file))) as url:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 400, "height": 800})
                page.goto(url)
                box = page.locator("#cb-message textarea")
                box.wait_for()
                width = {name: page.locator(selector).bounding_box()["width"]
                         for name, selector in (("box", "#cb-message"), ("send", "#cb-send"))}
            finally:
                browser.close()
    assert width["box"] >= 2 * width["send"], width
