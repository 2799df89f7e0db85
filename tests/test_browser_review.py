"""The Review tab in real Chromium at the widths people use. The server runs in-process.

Needs Debian's chromium at /usr/bin/chromium (./dev.sh test installs it).
"""

from pathlib import Path

import pytest

from app.server import create_server_app
from chatbot.config_file import load_config
from chatbot.engine import Engine
from chatbot.logs import ConversationLog
from chatbot.paths import DataPaths
from chatbot.variants import Variant
from log_support import log_exchanges
from server_app import serving
from serving import CHROMIUM, CHROMIUM_ARGS

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                 reason="chromium missing: apt-get install chromium")]

LINES_OF_EACH_HEADING = """() => [...document.querySelectorAll('#cb-review-table th')]
  .map((cell) => { const range = document.createRange();
                   range.selectNodeContents(cell.querySelector('.header'));
                   return [cell.innerText.trim(), range.getClientRects().length]; })"""
WIDTHS = (1280, 1024, 768, 400)
"""A desktop, a small laptop, a tablet, a phone."""
WHY_WORDS_SPLIT = """() => [...document.querySelectorAll('#cb-review-table [data-col="1"]')]
  .filter((cell) => { const lines = new Set(), text = document.createTreeWalker(cell, 4);
    while (text.nextNode()) {
      const range = document.createRange();
      range.selectNodeContents(text.currentNode);
      for (const rect of range.getClientRects()) lines.add(Math.round(rect.top));
    }
    return lines.size > cell.innerText.split(/\\s+/).length; }).length"""
"""Cells of the "why" column with more lines than words: a word split over two lines."""
SIDEWAYS_SCROLL = """() => { const table = document.querySelector('#cb-review-table table');
  return table.scrollWidth - table.parentElement.clientWidth; }"""


def test_the_review_list_reads_at_common_widths(tmp_path, echo) -> None:
    """The 'turn' column was sized to its numbers, so its heading broke into 'tu' over 'rn',
    and the answers ran off the side of the list (seen by scrolling it sideways)."""
    from playwright.sync_api import expect, sync_playwright

    config_file = tmp_path / "bot.yaml"
    config_file.write_text('models:\n  embedder: "hash:64"\n')
    config = load_config(config_file)
    log = ConversationLog(DataPaths(config.data_path).logs)
    log_exchanges(log, "web-a", [
        ("how do I index my documents folder", "Run sync.", -1),
        ("can I train a LoRA adapter on my own transcripts from last month", "Yes.", -1)])
    engine = Engine({"prompt": Variant("prompt", "base", "plain", False)}, lambda m: echo,
                    log=log)
    lines, overflow, split = {}, {}, {}
    with serving(create_server_app(engine, config)) as url:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                for width in WIDTHS:
                    page = browser.new_page(viewport={"width": width, "height": 800})
                    page.goto(url)
                    page.get_by_role("tab", name="Review").click()
                    expect(page.locator("#cb-review-table")).to_contain_text("thumbs down")
                    lines[width] = dict(page.evaluate(LINES_OF_EACH_HEADING))
                    overflow[width] = page.evaluate(SIDEWAYS_SCROLL)
                    split[width] = page.evaluate(WHY_WORDS_SPLIT)
                    page.close()
            finally:
                browser.close()
    assert lines == {width: {"turn": 1, "why": 1, "question": 1, "answer": 1}
                     for width in WIDTHS}
    assert all(pixels <= 0 for pixels in overflow.values()), overflow
    assert split == {width: 0 for width in WIDTHS}  # 'thumb' over 's' at 400 pixels
