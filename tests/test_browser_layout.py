"""The web page on a phone-sized screen in real Chromium. The server runs in-process (uvicorn).

Needs Debian's chromium at /usr/bin/chromium (./dev.sh test installs it).
"""

from pathlib import Path

import pytest

from app.server import create_server_app
from chatbot.config_file import load_config
from chatbot.engine import Engine
from chatbot.variants import Variant
from server_app import full_app, config_file, credentials, serving  # noqa: F401 (fixtures)
from serving import CHROMIUM, CHROMIUM_ARGS

ONE_LINE = """(selector) => { const range = document.createRange();
  range.selectNodeContents(document.querySelector(selector));
  return new Set([...range.getClientRects()].map((rect) => rect.top)).size; }"""
"""The lines the text of an element takes."""

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


def test_on_a_phone_the_arena_question_has_the_row_and_ask_both_goes_under_it(full_app
                                                                             ) -> None:
    """At 400 pixels "Ask both" took half the row beside the box, and the question's
    placeholder wrapped onto three lines of a box 158 pixels wide."""
    from playwright.sync_api import sync_playwright

    with serving(full_app) as url:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 400, "height": 800})
                page.goto(url)
                page.get_by_role("button", name="More tabs").click()  # a phone has no room
                page.get_by_role("button", name="Arena", exact=True).click()
                page.locator("#cb-arena-question textarea").wait_for()
                box, ask = (page.locator(selector).bounding_box()
                            for selector in ("#cb-arena-question", "#cb-arena-ask"))
                label_lines = page.evaluate(ONE_LINE, "#cb-arena-ask")
            finally:
                browser.close()
    assert box["width"] >= 300 and ask["y"] >= box["y"] + box["height"], (box, ask)
    assert label_lines == 1
