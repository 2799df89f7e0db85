"""The Arena and Dashboard tabs in real Chromium: ask, vote, names revealed, report updated.

Needs Debian's chromium at /usr/bin/chromium (./dev.sh test installs it).
"""

import random
from pathlib import Path

import pytest

from chatbot.ab import AbStore
from chatbot.engine import Engine
from chatbot.generate import GenerationSettings
from chatbot.logs import ConversationLog
from chatbot.variants import Variant
from serving import CHROMIUM, free_port

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                 reason="chromium missing: apt-get install chromium")]


def test_arena_vote_in_the_browser(tmp_path, echo) -> None:
    from playwright.sync_api import expect, sync_playwright

    from app.ui import build_app
    from app.ui.arena import build_arena_tab
    from app.ui.dashboard import build_dashboard_tab

    path = tmp_path / "logs.sqlite"
    engine = Engine({"prompt": Variant("prompt", "b", "rag", False),
                     "finetuned": Variant("finetuned", "b", "plain", False)},
                    lambda model: echo, log=ConversationLog(path),
                    settings=GenerationSettings(max_new_tokens=20))
    store = AbStore(path)

    def arena() -> object:
        actions = build_arena_tab(engine, store)
        actions.rng = random.Random(0)
        return actions

    app = build_app(engine, tabs=[
        ("Arena", arena),
        ("Dashboard", lambda: build_dashboard_tab(store, list(engine.variants), bootstrap=50))])
    port = free_port()
    app.launch(server_port=port, prevent_thread_lock=True, ssr_mode=False, quiet=True)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM,
                                                 args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/")
            page.get_by_role("tab", name="Arena").click()
            page.locator("#cb-arena-question textarea").fill("how do I sync")
            page.locator("#cb-arena-ask").click()
            expect(page.locator("#cb-vote-a")).to_be_enabled(timeout=30_000)
            expect(page.locator("#cb-arena-a")).to_contain_text("how do I sync")
            expect(page.locator("#cb-arena-status")).not_to_contain_text("prompt")
            page.locator("#cb-vote-a").click()
            expect(page.locator("#cb-arena-status")).to_contain_text("A was", timeout=10_000)
            expect(page.locator("#cb-vote-b")).to_be_disabled()
            # the tab shows the figures as it opens: it was blank until Refresh was pressed
            page.get_by_role("tab", name="Dashboard").click()
            expect(page.locator("#cb-dashboard")).to_contain_text("Arena (1 vote)",
                                                                  timeout=30_000)
            browser.close()
    finally:
        app.close()
    assert [vote.choice for vote in store.votes()] == ["a"]
