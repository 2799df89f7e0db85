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
from serving import CHROMIUM, phone_page

ONE_LINE = """(selector) => { const range = document.createRange();
  range.selectNodeContents(document.querySelector(selector));
  return new Set([...range.getClientRects()].map((rect) => rect.top)).size; }"""
"""The lines the text of an element takes."""

BROKEN_WORDS = """(selector) => [...document.querySelectorAll(`${selector} th, ${selector} td`)]
  .flatMap((cell) => { const text = cell.firstChild, found = [];
    if (!text || text.nodeType !== Node.TEXT_NODE) return found;
    for (const word of text.nodeValue.matchAll(/[^\\s-]+/g)) {
      const range = document.createRange();
      range.setStart(text, word.index);
      range.setEnd(text, word.index + word[0].length);
      const tops = new Set([...range.getClientRects()].map((rect) => rect.top));
      if (tops.size > 1) found.push(word[0]);
    }
    return found; })"""
"""The words of a table's cells split over two lines (not at a hyphen)."""

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                 reason="chromium missing: apt-get install chromium")]


def test_on_a_phone_the_message_box_is_wider_than_the_send_button(tmp_path, echo) -> None:
    """At 400 pixels the Send button took half the row and the box showed 'Type a question
    and press Enter' over two cramped lines."""
    config_file = tmp_path / "bot.yaml"
    config_file.write_text('models:\n  embedder: "hash:64"\n')
    engine = Engine({"prompt": Variant("prompt", "base", "plain", False)}, lambda m: echo)
    with serving(create_server_app(engine, load_config(config_file))) as url:
        with phone_page(url) as page:
            box = page.locator("#cb-message textarea")
            box.wait_for()
            width = {name: page.locator(selector).bounding_box()["width"]
                     for name, selector in (("box", "#cb-message"), ("send", "#cb-send"))}
    assert width["box"] >= 2 * width["send"], width


def test_on_a_phone_the_arena_question_has_the_row_and_ask_both_goes_under_it(full_app
                                                                             ) -> None:
    """At 400 pixels "Ask both" took half the row beside the box, and the question's
    placeholder wrapped onto three lines of a box 158 pixels wide."""
    with serving(full_app) as url:
        with phone_page(url) as page:
            page.get_by_role("button", name="More tabs").click()  # a phone has no room
            page.get_by_role("button", name="Arena", exact=True).click()
            page.locator("#cb-arena-question textarea").wait_for()
            box, ask = (page.locator(selector).bounding_box()
                        for selector in ("#cb-arena-question", "#cb-arena-ask"))
            label_lines = page.evaluate(ONE_LINE, "#cb-arena-ask")
    assert box["width"] >= 300 and ask["y"] >= box["y"] + box["height"], (box, ask)
    assert label_lines == 1


def test_on_a_phone_the_dashboard_tables_split_no_word(full_app) -> None:
    """At 400 pixels the report's tables broke 'variant' into 'varia' over 'nt', 'prompt' into
    'promp' over 't' and 'difference' over three lines; a table too wide now scrolls."""
    from playwright.sync_api import expect

    with serving(full_app) as url:
        with phone_page(url) as page:
            page.get_by_role("button", name="More tabs").click()
            page.get_by_role("button", name="Dashboard", exact=True).click()
            expect(page.locator("#cb-dashboard table").first).to_be_visible()
            broken = page.evaluate(BROKEN_WORDS, "#cb-dashboard")
    assert broken == []


def test_on_a_phone_the_data_report_tables_split_no_word(tiny_config, echo) -> None:
    """At 400 pixels the Training tab's data report broke 'conversations' into 'conversati' over
    'ons' and 'validation' likewise."""
    from playwright.sync_api import expect

    from app.build import build_variants
    from chatbot.logs import ConversationLog
    from chatbot.paths import DataPaths
    from log_support import log_exchanges

    config = load_config(tiny_config)
    log = ConversationLog(DataPaths(config.data_path).logs)
    for n in range(6):
        log_exchanges(log, f"web-{n}", [(f"How do I reset router {n}?", "Hold its button.", 1)])
    engine = Engine(build_variants(config), lambda m: echo, log=log)
    with serving(create_server_app(engine, config, config_path=tiny_config)) as url:
        with phone_page(url) as page:
            page.get_by_role("tab", name="Training").click()
            page.locator("#cb-dataset-name textarea").fill("support-v1")
            page.locator("#cb-build").click()
            expect(page.locator("#cb-data-report table").first).to_be_visible(
                timeout=60_000)
            broken = page.evaluate(BROKEN_WORDS, "#cb-data-report")
    assert broken == []
