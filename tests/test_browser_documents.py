"""The Documents tab's upload in real Chromium: the status line says what became of each upload,
the ones the page refuses before sending included. The server runs in-process (uvicorn).

Needs Debian's chromium at /usr/bin/chromium (./dev.sh test installs it).
"""

from pathlib import Path

import pytest

from app.build import bot_documents
from app.server import create_server_app
from chatbot.config_file import load_config
from chatbot.engine import Engine
from chatbot.variants import Variant
from server_app import serving
from serving import CHROMIUM, CHROMIUM_ARGS, phone_page

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                 reason="chromium missing: apt-get install chromium")]


@pytest.fixture
def url(tmp_path, echo):
    config_file = tmp_path / "bot.yaml"
    config_file.write_text('models:\n  embedder: "hash:64"\n'
                           'index:\n  max_file_mb: 0.01\n  max_upload_mb: 0.03\n')
    config = load_config(config_file)
    engine = Engine({"prompt": Variant("prompt", "base", "rag", True)}, lambda m: echo)
    with serving(create_server_app(engine, config, documents=bot_documents(config))) as url:
        yield url


def test_the_upload_status_says_what_became_of_an_upload_the_page_refused(url, tmp_path) -> None:
    """A file past index.max_file_mb is refused by the page itself, an upload past
    index.max_upload_mb too: the status line went on saying the last upload was indexed."""
    from playwright.sync_api import expect, sync_playwright

    files = {"small.md": "# Small\n\nCats sleep sixteen hours a day.\n",
             "big.md": "word " * 4000, **{f"part{n}.md": "word " * 1800 for n in range(4)}}
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    status_says = {("big.md",): "Not uploaded: big.md (0.019 MB) is larger than the 0.01 MB a "
                                "file may be (index.max_file_mb).",
                   tuple(f"part{n}.md" for n in range(4)): (
                       "Not uploaded: the 4 files come to 0.034 MB, more than the 0.03 MB one "
                       "upload may hold (index.max_upload_mb); upload fewer at a time."),
                   ("small.md",): "Indexed 1 of 1 file: 1 added"}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(url)
            page.get_by_role("tab", name="Documents").click()
            status = page.locator("#cb-upload-status")
            for names, says in status_says.items():
                page.locator("#cb-upload input[type=file]").set_input_files(
                    [str(tmp_path / name) for name in names])
                expect(status).to_contain_text(says, timeout=30_000)
                if says.startswith("Not uploaded"):  # the pop-up says it in the same words:
                    # it said 'File(s) exceed the maximum allowed size of 0.0 Mb: "big.md"'
                    # and 'HTTP 413: {"detail":"this upload is larger than ...'
                    expect(page.get_by_test_id("toast-text").last).to_have_text(says)
                    # and the drop box takes the next files: an 'Error' mark covered it, and a
                    # click on it opened no file chooser until that mark was closed
                    with page.expect_file_chooser():
                        page.locator("#cb-upload").click()
            expect(page.locator("#cb-documents")).to_contain_text("uploads/small.md")
        finally:
            browser.close()


def test_on_a_phone_the_documents_list_and_picker_show_whole_rows(url, tmp_path) -> None:
    """At 400 pixels a long file name took the list's whole width: its chunk count and the time
    it was indexed were off to the side, seen only by scrolling the list sideways."""
    from playwright.sync_api import expect

    upload = tmp_path / "refund-policy-for-customers-2026.md"
    upload.write_text("# Refunds\n\nRefunds are issued within 30 days of purchase.\n")
    with phone_page(url) as page:
        page.get_by_role("tab", name="Documents").click()
        page.locator("#cb-upload input[type=file]").set_input_files(str(upload))
        expect(page.locator("#cb-upload-status")).to_contain_text("Indexed 1 of 1")
        listed = page.locator("#cb-documents")
        expect(listed).to_contain_text("refund-policy")
        frame = listed.bounding_box()
        headings = {name: listed.get_by_role("columnheader", name=name).bounding_box()
                    for name in ("source", "chunks", "indexed at")}
        picker = page.locator("#cb-remove-pick").bounding_box()
    outside = [name for name, box in headings.items()
               if box["x"] + box["width"] > frame["x"] + frame["width"] + 1]
    assert outside == []
    # the document to remove was picked in a box half as wide, beside a large Remove button,
    # which showed 'uploads/refund-p'
    assert picker["width"] >= 0.95 * frame["width"], (picker, frame)
