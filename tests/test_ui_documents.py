"""The Documents tab on the bot's real index (FAISS + SQLite on disk, the hash embedder)."""

import re
from pathlib import Path

import gradio as gr
import pytest

from chatbot.config_file import load_config
from chatbot.engine import Engine
from app.build import bot_documents
from app.ui import build_app
from app.ui.documents import DocumentActions
from chatbot.variants import Variant


@pytest.fixture
def documents(tmp_path):
    config = tmp_path / "bot.yaml"
    config.write_text('models:\n  embedder: "hash:64"\nretrieval:\n  min_score: null\n')
    return bot_documents(load_config(config))


def write(folder: Path, name: str, text: str) -> str:
    """A file as the browser's upload leaves it: in a temporary folder of its own."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text, encoding="utf-8")
    return str(folder / name)


def test_upload_indexes_lists_searches_and_removes(documents, tmp_path) -> None:
    actions = DocumentActions(documents)
    uploads = [write(tmp_path / "gradio-a", "install.md", "# Install\n\nRun pip install."),
               write(tmp_path / "gradio-b", "faq.md", "# FAQ\n\nRefunds take five days.")]
    status, rows, chooser, dropped = actions.upload(uploads)
    assert dropped is None
    assert status.startswith("Indexed 2 of 2 files: 2 added")
    kept = ["uploads/faq.md", "uploads/install.md"]  # never the server's absolute path
    assert sorted(r[0] for r in rows) == kept and all(r[1] >= 1 for r in rows)
    assert sorted(chooser["choices"]) == kept
    results = actions.search("refunds five days", 2, "bm25")
    assert 'id="search-1"' in results and "faq.md" in results and "Refunds take" in results
    with pytest.warns(UserWarning, match="the limit is 2,000"):  # a pasted book: refused
        assert actions.search("refunds " * 50_000, 2, "hybrid") == ""
    status, rows, _ = actions.remove(kept[0])
    assert status == "Removed 1 document." and [r[0] for r in rows] == [kept[1]]


def test_a_failed_upload_of_a_known_name_keeps_the_file_it_would_have_replaced(documents,
                                                                              tmp_path) -> None:
    """The index still holds the earlier file: its copy must stay for the next sync to read."""
    actions = DocumentActions(documents)
    actions.upload([write(tmp_path / "one", "parking.md", "Park in bay 4.")])
    status, rows, _, _ = actions.upload([write(tmp_path / "two", "parking.md", "")])
    assert status.startswith("Indexed 0 of 1 file") and "`parking.md`: empty file" in status
    assert (documents.upload_dir / "parking.md").read_text() == "Park in bay 4."
    assert [r[0] for r in rows] == ["uploads/parking.md"]
    assert sorted(p.name for p in documents.upload_dir.iterdir()) == ["parking.md"]


def test_two_files_of_one_name_in_one_upload_are_refused_not_one_lost(documents,
                                                                     tmp_path) -> None:
    actions = DocumentActions(documents)
    both = [write(tmp_path / "a", "report.md", "The ferret report."),
            write(tmp_path / "b", "report.md", "The iguana report.")]
    with pytest.warns(UserWarning, match="More than one file is named report.md"):
        status, rows, _, kept = actions.upload(both)
    assert status == gr.update() and rows == [] and kept is None
    assert not documents.upload_dir.exists() or not any(documents.upload_dir.iterdir())


def test_an_upload_holds_one_copy_and_a_refused_one_none(documents, tmp_path) -> None:
    """Each upload was copied out of Gradio's cache and the cached file kept for a day: twice
    the disk. A sync that failed (a damaged index) left the new files in uploads/, unindexed,
    and a refused upload left its files in the cache."""
    actions = DocumentActions(documents)
    cached = write(tmp_path / "gradio-a", "install.md", "# Install\n\nRun pip install.")
    actions.upload([cached])
    assert not Path(cached).exists() and (documents.upload_dir / "install.md").is_file()
    with pytest.warns(UserWarning, match="install.md: no longer on the server"):
        actions.upload([cached])  # an API caller's second call with one uploaded file
    both = [write(tmp_path / "b", "report.md", "Ferrets."), write(tmp_path / "c", "report.md",
                                                                   "Iguanas.")]
    with pytest.warns(UserWarning, match="More than one file is named report.md"):
        actions.upload(both)
    (documents.index.directory / "manifest.json").write_text("")  # damaged: syncs fail
    damaged = [write(tmp_path / "d", "faq.md", "Refunds."),
               write(tmp_path / "e", "install.md", "# Install\n\nRun uv pip install.")]
    with pytest.raises(gr.Error, match="manifest"):
        actions.upload(damaged)
    assert not any(Path(f).exists() for f in both + damaged)
    assert sorted(p.name for p in documents.upload_dir.iterdir()) == ["install.md"]
    assert (documents.upload_dir / "install.md").read_text().endswith("Run pip install.")


def test_upload_of_a_changed_file_updates_it(documents, tmp_path) -> None:
    actions = DocumentActions(documents)
    actions.upload([write(tmp_path / "one", "notes.md", "Old text about cats.")])
    status, rows, _, _ = actions.upload([write(tmp_path / "two", "notes.md", "New text on dogs.")])
    assert "1 updated" in status and len(rows) == 1
    assert "dogs" in actions.search("dogs", 1, "bm25")


def test_engine_search_finds_documents_indexed_after_start(documents, tmp_path, echo) -> None:
    assert documents.hits("anything", 3) == []  # nothing indexed yet: no retriever, no error
    engine = Engine({"prompt": Variant("prompt", "base", "rag", True)}, lambda m: echo,
                    search=documents.hits)
    DocumentActions(documents).upload([write(tmp_path / "u", "pets.md", "Cats sleep a lot.")])
    reply = engine.answer("s", "do cats sleep", "prompt").result()
    assert [h.source for h in reply.hits] == ["uploads/pets.md"]
    assert "[1] uploads/pets.md" in reply.messages[-1].content
    assert str(tmp_path) not in str(reply.as_dict())  # nor anywhere a visitor could see it


def test_empty_requests_warn_and_errors_become_ui_errors(documents, tmp_path) -> None:
    actions = DocumentActions(documents)
    with pytest.warns(UserWarning, match="Choose one or more files"):
        actions.upload([])
    with pytest.warns(UserWarning, match="Type something"):
        assert actions.search("  ", 3, "hybrid") == ""
    with pytest.warns(UserWarning, match="k must be a whole number of passages from 1 to 20, "
                                         "not nan"):  # the Gradio API takes NaN
        assert actions.search("refunds", float("nan"), "bm25") == ""
    with pytest.raises(gr.Error, match="uploads/a.md is not indexed; pick one of the listed"):
        actions.remove("uploads/a.md")
    actions.upload([write(tmp_path / "u", "a.md", "Some text.")])
    with pytest.raises(gr.Error, match="/no/such/file.md is not indexed; pick one of the listed"):
        actions.remove("/no/such/file.md")


def test_app_has_a_documents_tab_only_when_given_documents(documents, echo) -> None:
    engine = Engine({"prompt": Variant("prompt", "base", "rag", True)}, lambda m: echo)
    with_docs = build_app(engine, documents=documents)
    without = build_app(engine)
    labels = lambda app: {b.label for b in app.blocks.values() if isinstance(b, gr.Tab)}
    assert labels(with_docs) == {"Chat", "Documents"} and labels(without) == {"Chat"}


def test_a_file_that_cannot_be_read_is_named_with_its_reason(documents, tmp_path) -> None:
    broken = tmp_path / "u" / "broken.pdf"
    broken.parent.mkdir()
    broken.write_bytes(b"%PDF-1.4 this is not really a pdf")
    status, rows, _, _ = DocumentActions(documents).upload([str(broken)])
    assert "1 failed" in status and "- not indexed: `broken.pdf`: " in status and rows == []
    assert not (documents.upload_dir / "broken.pdf").exists()  # nor kept on the server


def held_by_a_cli_sync(documents, event) -> tuple[list, list[str]]:
    """``event(progress)`` run on a thread while another process's sync holds the index: its
    result, and what it showed in its progress line."""
    import threading

    from filelock import FileLock

    index = documents.index.directory
    index.mkdir(parents=True, exist_ok=True)
    cli_sync = FileLock(str(index / ".lock"))
    cli_sync.acquire()
    shown: list[str] = []
    said_it_waits = threading.Event()

    def progress(value, desc=None, **kwargs) -> None:
        shown.append(desc)
        if "waiting" in (desc or ""):
            said_it_waits.set()

    results = []
    running = threading.Thread(target=lambda: results.append(event(progress)))
    running.start()
    try:
        assert said_it_waits.wait(30), shown
    finally:
        cli_sync.release()
        running.join(60)
    return results, shown


WAITED = ("waiting for another sync of the index to finish (a `chatbot index sync`, or another "
          "upload)")


def test_an_upload_or_removal_that_waits_for_a_cli_sync_says_so(documents, tmp_path) -> None:
    """While `chatbot index sync` held the index, an upload or a removal showed nothing until
    it ended (minutes, for a large folder): the waiting was said only in the server's log."""
    actions = DocumentActions(documents)
    upload = write(tmp_path / "u", "notes.md", "Notes on parking.")
    results, shown = held_by_a_cli_sync(documents, lambda progress: actions.upload([upload],
                                                                                   progress))
    assert shown[0] == WAITED and results[0][0].startswith("Indexed 1 of 1 file")
    results, shown = held_by_a_cli_sync(
        documents, lambda progress: actions.remove("uploads/notes.md", progress))
    assert shown == [WAITED] and results[0][0] == "Removed 1 document."


def test_a_damaged_index_is_told_without_the_servers_paths(documents, tmp_path) -> None:
    """The page showed '/srv/bot/data/index/manifest.json is not valid JSON ...' (the server's
    layout is no visitor's business), and the list that fills as the page opens failed bare."""
    actions = DocumentActions(documents)
    actions.upload([write(tmp_path / "a", "faq.md", "Refunds take five days.")])
    (documents.index.directory / "manifest.json").write_text("")
    told = "index/manifest.json is not valid JSON (Expecting value: line 1 column 1 (char 0))"
    for act in (lambda: actions.upload([write(tmp_path / "b", "new.md", "New.")]),
                lambda: actions.search("refunds", 3, "bm25"),
                lambda: actions.remove("uploads/faq.md")):
        with pytest.raises(gr.Error) as refused:
            act()
        assert refused.value.message.startswith(told) and str(tmp_path) not in str(
            refused.value.message)
    with pytest.warns(UserWarning, match=f"^{re.escape(told)}"):
        rows, chooser = actions.table()
    assert rows == [] and chooser["choices"] == []


def test_a_removed_upload_leaves_no_copy_on_the_server(documents, tmp_path) -> None:
    """Removing an uploaded document took it out of the index but left its file in uploads/,
    where no page could reach it again: each removed upload stayed on the disk for good."""
    actions = DocumentActions(documents)
    actions.upload([write(tmp_path / "a", "faq.md", "Refunds take five days."),
                    write(tmp_path / "b", "parking.md", "Park in bay 4.")])
    status, rows, _ = actions.remove("uploads/faq.md")
    assert status == "Removed 1 document." and [r[0] for r in rows] == ["uploads/parking.md"]
    assert sorted(p.name for p in documents.upload_dir.iterdir()) == ["parking.md"]


def test_a_large_upload_shows_its_chunks_as_they_are_embedded(documents, tmp_path) -> None:
    """The progress line said 'indexed manual.md' and then nothing while the file's chunks
    were embedded (minutes for a 300-page PDF); now it counts them."""
    shown = []
    text = "\n\n".join(f"Form {n} is filed before day {n} of the year, by post or online."
                       for n in range(3000))
    status, *_ = DocumentActions(documents).upload(
        [write(tmp_path / "a", "manual.md", text)],
        lambda value, desc=None, **kwargs: shown.append((value, desc)))
    assert status.startswith("Indexed 1 of 1 file")
    embedding = [(value, desc) for value, desc in shown if desc.startswith("embedding")]
    (done, total), desc = embedding[-1]
    assert len(embedding) > 1 and done == total
    assert desc == f"embedding the chunks: {done} of {total}"
