"""``chatbot index sync|search|list|remove|stats`` as a user runs them."""

from __future__ import annotations

import contextlib
import json

import pytest
from click.testing import CliRunner

from app.cli import main
from index_helpers import write_bot


@pytest.fixture()
def bot(tmp_path, monkeypatch):
    monkeypatch.setenv("CHATBOT_DATA_DIR", str(tmp_path / "data"))
    config = write_bot(tmp_path, {
        "install.md": "# Install\n\n## Linux\n\nRun the installer with sudo.\n",
        "faq.csv": "question,answer\nPrice?,It costs nothing.\n"},
        embedder="hash:256", index="  text_field: answer\n")
    return tmp_path, str(config)


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_sync_search_list_remove_stats(bot):
    tmp_path, config = bot
    synced = run("index", "sync", "--config", config)
    assert synced.exit_code == 0
    assert synced.stdout.startswith("2 added, 0 updated, 0 unchanged, 0 removed, 0 failed; 2 chunks")
    hits = json.loads(run("index", "search", "installer sudo", "--k", "1", "--json",
                          "--config", config).stdout)
    assert hits[0]["source"] == "docs/install.md"  # as the chat names it
    assert hits[0]["location"] == "Install > Linux"
    assert {"chunk_id", "source", "score", "text"} <= set(hits[0])
    garbled = run("index", "search", "installer \udcff sudo", "--json", "--config", config)
    assert garbled.exit_code == 0 and json.loads(garbled.stdout)  # a byte the shell passed on
    text = run("index", "search", "costs", "--mode", "bm25", "--config", config).stdout
    assert text.startswith("1. [") and "faq.csv (row 1)" in text and "It costs nothing." in text
    listed = run("index", "list", "--config", config).stdout.splitlines()
    assert listed[-1] == "2 documents" and listed[0].split()[:2] == ["1", "chunk"]
    stats = json.loads(run("index", "stats", "--json", "--config", config).stdout)
    assert (stats["documents"], stats["chunks"], stats["embedder"], stats["dimension"],
            stats["index_type"], stats["faiss_type"]) == (2, 2, "hash:256", 256, "auto", "flat")
    assert stats["size_bytes"] > 0
    removed = run("index", "remove", str(tmp_path / "docs" / "faq.csv"), "--config", config)
    assert removed.stdout == "removed 1 document\n"
    assert run("index", "stats", "--json", "--config", config).stdout.count('"documents": 1') == 1


def test_an_empty_path_is_refused_not_read_as_the_current_folder(bot, monkeypatch):
    """`chatbot index remove "$FILE"` with FILE unset removed everything under the current
    folder; `sync ""` indexed it."""
    tmp_path, config = bot
    monkeypatch.chdir(tmp_path)
    assert run("index", "sync", "--config", config).exit_code == 0
    for command in (["index", "remove", ""], ["index", "sync", "docs", ""]):
        refused = run(*command, "--config", config)
        assert refused.exit_code == 2
        assert "an empty path names no file or folder" in refused.output
    assert run("index", "list", "--config", config).stdout.splitlines()[-1] == "2 documents"


def test_a_listing_read_by_a_reader_that_stops_early_ends_quietly(bot):
    """`chatbot index list | head -1`: the reader going away is no error to print."""
    import os
    import subprocess
    import sys

    tmp_path, config = bot
    assert run("index", "sync", "--config", config).exit_code == 0
    listing = subprocess.Popen([sys.executable, "-m", "app", "index", "list", "--config", config],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env={**os.environ, "CHATBOT_DATA_DIR": str(tmp_path / "data")})
    listing.stdout.close()  # gone before the first line is written
    assert listing.stderr.read() == b"" and listing.wait(timeout=120) == 1


def test_ctrl_c_in_a_sync_says_the_index_is_as_before_and_leaves_no_half_sync(bot):
    import os
    import signal
    import subprocess
    import sys
    import time

    tmp_path, config = bot
    assert run("index", "sync", "--config", config).exit_code == 0
    for i in range(3000):
        (tmp_path / "docs" / f"note{i}.md").write_text(f"# Note {i}\n\nText number {i}.\n")
    syncing = subprocess.Popen([sys.executable, "-m", "app", "index", "sync", "--config", config],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "CHATBOT_DATA_DIR": str(tmp_path / "data")})
    staged = tmp_path / "data" / "index" / "docstore-000002.sqlite"  # the sync's own generation
    deadline = time.monotonic() + 120
    while not staged.exists() and syncing.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    syncing.send_signal(signal.SIGINT)
    _, said = syncing.communicate(timeout=120)
    assert syncing.returncode == 1, said
    assert said.endswith("error: interrupted; the index is as the last finished sync left it "
                         "(`chatbot index stats` shows it); run the sync again to index the "
                         "files\n")
    assert not staged.exists()
    assert run("index", "list", "--config", config).stdout.splitlines()[-1] == "2 documents"


def test_ctrl_c_stops_a_sync_started_in_the_background(bot):
    """`chatbot index sync &` inherits SIGINT ignored: the Ctrl-C (or `kill -INT`) did nothing
    and the sync ran on to its end."""
    from ctrl_c import ctrl_c_once, started

    tmp_path, config = bot
    assert run("index", "sync", "--config", config).exit_code == 0
    for i in range(3000):
        (tmp_path / "docs" / f"note{i}.md").write_text(f"# Note {i}\n\nText number {i}.\n")
    staged = tmp_path / "data" / "index" / "docstore-000002.sqlite"
    syncing = started(["index", "sync", "--config", config], in_background=True,
                      CHATBOT_DATA_DIR=str(tmp_path / "data"))
    said = ctrl_c_once(syncing, staged.exists)
    assert "interrupted; the index is as the last finished sync left it" in said
    assert not staged.exists()
    assert run("index", "list", "--config", config).stdout.splitlines()[-1] == "2 documents"


def test_a_ctrl_c_python_dropped_still_stops_the_sync_at_the_next_file(bot):
    """Pressed while a garbage-collection callback runs, the KeyboardInterrupt is dropped by
    Python; the sync went on and committed every file."""
    from ctrl_c import a_dropped_ctrl_c

    from app.build import bot_index
    from chatbot.config_file import load_config
    from chatbot.indexing import sync_paths

    tmp_path, config = bot
    assert run("index", "sync", "--config", config).exit_code == 0
    (tmp_path / "docs" / "more.md").write_text("# More\n\nAnother page.\n")
    with a_dropped_ctrl_c(), pytest.raises(KeyboardInterrupt):
        sync_paths(bot_index(load_config(config)))
    assert run("index", "list", "--config", config).stdout.splitlines()[-1] == "2 documents"
    assert not (tmp_path / "data" / "index" / "docstore-000002.sqlite").exists()


def test_failed_file_is_listed_and_exit_code_is_one(bot):
    tmp_path, config = bot
    (tmp_path / "docs" / "broken.pdf").write_bytes(b"%PDF-1.4 nonsense")
    result = run("index", "sync", "--config", config)
    assert result.exit_code == 1
    failure = f"failed: {tmp_path / 'docs' / 'broken.pdf'}: corrupt PDF"
    # splitlines also splits at the progress bar's \r: a slow sync shows the bar first.
    assert any(line.startswith(failure) for line in result.stderr.splitlines())
    assert "2 added" in result.stdout and "1 failed" in result.stdout


def test_a_folder_with_nothing_to_index_says_so(bot):
    tmp_path, config = bot
    (tmp_path / "scans").mkdir()
    (tmp_path / "scans" / "page.tiff").write_bytes(b"II*\x00")
    result = run("index", "sync", str(tmp_path / "scans"), "--config", config)
    assert result.exit_code == 0 and result.stdout.startswith("0 added, 0 updated")
    assert result.stderr.startswith(f"warning: no document found in {tmp_path / 'scans'}: "
                                    "none there matches index.include (**/*.md, ")
    assert "warning" not in run("index", "sync", "--config", config).stderr


def test_sync_with_no_paths_anywhere_says_what_to_give(tmp_path, monkeypatch):
    monkeypatch.setenv("CHATBOT_DATA_DIR", str(tmp_path / "data"))
    config = tmp_path / "bot.yaml"
    config.write_text('models:\n  embedder: "hash:64"\nindex:\n  paths: []\n')
    result = run("index", "sync", "--config", str(config))
    assert result.exit_code == 2
    assert "nothing to sync: name files or folders, or list them under index.paths" \
        in result.stderr


def test_search_before_sync_is_one_line(bot):
    _, config = bot
    result = run("index", "search", "anything", "--config", config)
    assert result.exit_code == 1
    assert result.stderr == ("error: nothing is indexed yet; run `chatbot index sync PATH` "
                             "first\n")


def test_an_empty_query_is_one_line(bot):
    _, config = bot
    assert run("index", "sync", "--config", config).exit_code == 0
    result = run("index", "search", "  ", "--config", config)
    assert result.exit_code == 1
    assert result.stderr == "error: the query is empty; give the words to search for\n"


def test_changed_settings_say_rebuild_and_rebuild_works(bot):
    tmp_path, config = bot
    run("index", "sync", "--config", config)
    other = tmp_path / "other.yaml"
    other.write_text(open(config).read().replace("hash:256", "hash:128"))
    result = run("index", "sync", "--config", str(other))
    assert result.exit_code == 1 and result.stderr.startswith("error: ")
    assert result.stderr.endswith("re-index it: chatbot index sync --rebuild\n")
    assert "embedder is 'hash:256' in the index but 'hash:128' in the config" in result.stderr
    rebuilt = run("index", "sync", "--rebuild", "--config", str(other))
    assert rebuilt.exit_code == 0 and rebuilt.stdout.startswith("2 added")
    stats = json.loads(run("index", "stats", "--json", "--config", str(other)).stdout)
    assert stats["dimension"] == 128


def test_sync_json_report(bot):
    _, config = bot
    report = json.loads(run("index", "sync", "--json", "--config", config).stdout)
    assert len(report["added"]) == 2 and report["failed"] == [] and report["chunks"] == 2


def test_a_file_name_with_a_line_end_is_shown_escaped_on_one_line(bot):
    """A newline in a name split `index list`'s line in two (and `sync`'s failure line, and
    `search`'s): such a name is shown as Python writes it, quoted with its escapes."""
    tmp_path, config = bot
    (tmp_path / "docs" / "two\nlines.md").write_text("# Odd\n\nA name with a line end.\n")
    (tmp_path / "docs" / "empty\tone.md").write_text("")
    synced = run("index", "sync", "--config", config)
    odd, empty = tmp_path / "docs" / "two\nlines.md", tmp_path / "docs" / "empty\tone.md"
    assert f"failed: {str(empty)!r}: empty file: write its text, or delete it\n" in synced.stderr
    listed = run("index", "list", "--config", config).stdout.splitlines()
    assert len(listed) == 4 and listed[-1] == "3 documents"
    assert any(line.endswith("  'docs/two\\nlines.md'") for line in listed)
    assert any(line.endswith("  docs/install.md") for line in listed)
    found = run("index", "search", "line end", "--mode", "bm25", "--k", "1", "--config", config)
    assert found.stdout.splitlines()[0].endswith("] 'docs/two\\nlines.md' (Odd)")
    assert run("index", "remove", str(odd), "--config", config).exit_code == 0


def test_remove_through_a_symlink_finds_what_sync_indexed(bot):
    """`index remove` named the path as given: through a link to an indexed folder or file (or
    by the real path of a folder synced through a link) it found nothing to remove."""
    tmp_path, config = bot
    assert run("index", "sync", "--config", config).exit_code == 0
    (tmp_path / "shortcut").symlink_to(tmp_path / "docs")
    (tmp_path / "install-link.md").symlink_to(tmp_path / "docs" / "install.md")
    one = run("index", "remove", str(tmp_path / "install-link.md"), "--config", config)
    assert (one.exit_code, one.stdout) == (0, "removed 1 document\n")
    rest = run("index", "remove", str(tmp_path / "shortcut"), "--config", config)
    assert (rest.exit_code, rest.stdout) == (0, "removed 1 document\n")
    assert run("index", "list", "--config", config).stdout == "0 documents\n"
    # the other way round: synced through the link, removed by the real path
    assert run("index", "sync", str(tmp_path / "shortcut"), "--config", config).exit_code == 0
    by_real = run("index", "remove", str(tmp_path / "docs"), "--config", config)
    assert (by_real.exit_code, by_real.stdout) == (0, "removed 2 documents\n")


def test_a_path_given_with_a_line_end_or_escape_is_shown_escaped_in_every_message(bot):
    """A user's path (a folder with nothing to index, a file not indexed, a question file, a
    link's target) printed as it is could forge an output line or colour the terminal: each
    message shows it as `index list` shows names, quoted with its escapes, on one line."""
    tmp_path, config = bot
    odd = tmp_path / "empty\nerror: forged \x1b[31m"
    odd.mkdir()
    (tmp_path / "docs" / "gone.md").symlink_to(tmp_path / "no\x1b[2Jtarget")
    (tmp_path / "questions\n.jsonl").write_text("not json\n")
    outputs = [run("index", "sync", str(odd), "--config", config).stderr,
               run("index", "sync", "--config", config).stderr,
               run("index", "remove", str(odd), "--config", config).stderr,
               run("index", "eval", "--data", str(tmp_path / "questions\n.jsonl"),
                   "--config", config).stderr]
    for output in outputs:
        assert "\x1b" not in output and "\nerror: forged" not in output, output
    assert repr(str(odd)) in outputs[0] and repr(str(odd)) in outputs[2]
    assert repr(str(tmp_path / "no\x1b[2Jtarget")) in outputs[1]
    assert repr(str(tmp_path / "questions\n.jsonl")) in outputs[3]


def test_list_of_an_empty_index_says_how_to_fill_it_and_counts_in_words(bot):
    """A new user's first `chatbot index list` printed a bare "0 documents"; one document
    printed "1 documents"."""
    tmp_path, config = bot
    empty = run("index", "list", "--config", config)
    assert (empty.exit_code, empty.stdout) == (0, "0 documents\n")
    assert empty.stderr == ("note: nothing is indexed yet; index the config's index.paths with "
                            "`chatbot index sync`\n")
    run("index", "sync", str(tmp_path / "docs" / "install.md"), "--config", config)
    one = run("index", "list", "--config", config)
    assert one.stdout.splitlines()[-1] == "1 document" and one.stderr == ""


def test_removing_an_upload_deletes_its_file_as_the_web_ui_does(bot, monkeypatch):
    """`index remove uploads/X` took the upload out of the index but left its file in
    uploads/, where the web UI's removal deletes it; a file synced from elsewhere is kept."""
    tmp_path, config = bot
    upload = tmp_path / "data" / "uploads" / "notes.md"
    upload.parent.mkdir(parents=True)
    upload.write_text("# Notes\n\nRefunds take five days.\n")
    assert run("index", "sync", str(upload), "--config", config).exit_code == 0
    assert run("index", "sync", "--config", config).exit_code == 0  # docs/ beside it
    monkeypatch.chdir(tmp_path / "docs")
    removed = run("index", "remove", "uploads/notes.md", "--config", config)
    assert (removed.exit_code, removed.stdout) == (
        0, "removed 1 document; deleted 1 uploaded file from uploads/\n")
    assert not upload.exists()
    kept = run("index", "remove", str(tmp_path / "docs" / "install.md"), "--config", config)
    assert kept.stdout == "removed 1 document\n"
    assert (tmp_path / "docs" / "install.md").exists()


def test_removing_an_upload_keeps_a_newer_file_of_its_name(bot, monkeypatch):
    """A file uploaded again under the name while the old one was being removed (not indexed
    yet: its sync waits for the removal) was deleted with the old one's entry."""
    tmp_path, config = bot
    upload = tmp_path / "data" / "uploads" / "notes.md"
    upload.parent.mkdir(parents=True)
    upload.write_text("# Notes\n\nRefunds take five days.\n")
    assert run("index", "sync", str(upload), "--config", config).exit_code == 0
    upload.write_text("# Notes\n\nRefunds take three days now.\n")  # the new upload
    removed = run("index", "remove", str(upload), "--config", config)
    assert (removed.exit_code, removed.stdout) == (0, "removed 1 document\n")
    assert upload.read_text() == "# Notes\n\nRefunds take three days now.\n"


def test_a_dropped_ctrl_c_stops_the_embedding_of_a_large_file(bot):
    """A Ctrl-C that Python dropped was seen only between files: one large file's chunks were
    all embedded (minutes for a 300-page PDF) before the sync stopped."""
    from ctrl_c import a_dropped_ctrl_c
    from index_helpers import CountingEmbedder

    from app.build import bot_index
    from chatbot.config_file import load_config
    from chatbot.indexing import sync_paths

    tmp_path, config = bot
    manual = tmp_path / "docs" / "manual.md"
    manual.write_text("\n\n".join(
        f"Form {n} is filed before day {n} of the year, by post or online." for n in range(9000)))
    embedder = CountingEmbedder(256)

    def press_once_listed(done: int, total: int, source: str) -> None:
        if done == 0:  # pressed once the sync has begun, before the file is read
            pressed.enter_context(a_dropped_ctrl_c())

    with contextlib.ExitStack() as pressed, pytest.raises(KeyboardInterrupt):
        sync_paths(bot_index(load_config(config)), [manual], progress=press_once_listed,
                   embedder=embedder)
    assert embedder.calls == 2  # the first slice's chunks and their sentences, no more
    assert not (tmp_path / "data" / "index" / "manifest.json").exists()
