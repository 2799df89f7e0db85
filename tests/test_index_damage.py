"""A damaged index (a file of the generation in force deleted, emptied or cut short) is one
`error:` line naming the file and `--rebuild`, from every command that opens it; a plain sync
refuses it instead of calling it unchanged, and leaves no file behind; `--rebuild` repairs it.
Real FAISS, SQLite and BM25 files on disk, damaged the way a user or a full disk would."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from app.cli import main
from chatbot.errors import DocumentIndexError
from chatbot.indexing import BotIndex, EmbedderSpec, IndexSearch, SearchSettings
from index import store_files
from index_helpers import write_bot
from index.errors import IndexDamagedError
from index.manifest import IndexSettings
from index.store import Store

ROOT = Path(__file__).resolve().parents[1]
REBUILD = "; re-index it: chatbot index sync --rebuild\n"


def cut_in_half(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


# (what a user did, how, the file the message names and what it says of it)
DAMAGES = {
    "faiss deleted": (lambda ix: (ix / "faiss-000001.index").unlink(),
                      "faiss-000001.index is missing"),
    "faiss cut short": (lambda ix: cut_in_half(ix / "faiss-000001.index"),
                        "faiss-000001.index is not a readable FAISS index"),
    "docstore emptied": (lambda ix: (ix / "docstore-000001.sqlite").write_bytes(b""),
                         "docstore-000001.sqlite is empty, not a database"),
    "docstore cut short": (lambda ix: cut_in_half(ix / "docstore-000001.sqlite"),
                           "docstore-000001.sqlite is not a readable database "
                           "(database disk image is malformed)"),
    "bm25 folder deleted": (lambda ix: shutil.rmtree(ix / "bm25-000001"),
                            "bm25-000001 is missing"),
    "bm25 file deleted": (lambda ix: (ix / "bm25-000001" / "vocab.index.json").unlink(),
                          "bm25-000001/vocab.index.json is missing"),
}


@pytest.fixture()
def bot(tmp_path, monkeypatch):
    """A bot with two documents synced: generation 1 of its index."""
    monkeypatch.setenv("CHATBOT_DATA_DIR", str(tmp_path / "data"))
    config = write_bot(tmp_path, {
        "install.md": "# Install\n\n## Linux\n\nRun the installer with sudo.\n",
        "ports.md": "# Network\n\nThe server listens on port 7860.\n"})
    assert run("index", "sync", "--config", str(config)).exit_code == 0
    return tmp_path / "data" / "index", str(config)


def run(*args: str):
    """The CLI in-process; an exception other than the one-line exit fails the test."""
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.mark.parametrize("damage", DAMAGES)
def test_search_and_sync_name_the_damaged_file_and_rebuild_repairs_it(bot, damage):
    index, config = bot
    harm, problem = DAMAGES[damage]
    harm(index)
    before = files(index)
    expected = f"error: the index at {index} is damaged: {problem}{REBUILD}"
    for command in (["index", "search", "port"], ["index", "sync"]):
        result = run(*command, "--config", config)
        assert (result.exit_code, result.stdout, result.stderr) == (1, "", expected), command
    assert files(index) == before  # the refused sync staged nothing and removed nothing
    rebuilt = run("index", "sync", "--rebuild", "--config", config)
    assert rebuilt.exit_code == 0 and rebuilt.stdout.startswith("2 added")
    hits = json.loads(run("index", "search", "port", "--json", "--config", config).stdout)
    assert hits[0]["source"].endswith("ports.md")
    assert files(index) == [".lock", "bm25-000002", "docstore-000002.sqlite",
                            "faiss-000002.index", "manifest.json"]


def test_list_stats_and_eval_report_the_damage_too(bot, tmp_path):
    """`list` and `stats` read only the docstore, but a missing file is still named."""
    index, config = bot
    (index / "faiss-000001.index").unlink()
    questions = tmp_path / "q.jsonl"
    questions.write_text('{"question": "which port?", "gold_sentences": ["port 7860"]}\n')
    for command in (["index", "list"], ["index", "stats"], ["index", "eval", "--data",
                                                            str(questions)]):
        result = run(*command, "--config", config)
        assert result.exit_code == 1, command
        assert result.stderr == (f"error: the index at {index} is damaged: "
                                 f"faiss-000001.index is missing{REBUILD}")


def test_servers_retrieval_raises_the_one_line_error(bot):
    """The engine's search (``IndexSearch``) raises what the API and web UI show as the reason,
    without the server's folders."""
    index, _ = bot
    (index / "docstore-000001.sqlite").write_bytes(b"")
    search = IndexSearch(BotIndex(index, IndexSettings("hash:64", None, 200, 30),
                                  EmbedderSpec("hash:64", index), SearchSettings()))
    with pytest.raises(DocumentIndexError, match="docstore-000001.sqlite is empty") as raised:
        search("port", 2)
    # the operator is told where; a stranger asking the server learns no folder of it
    assert str(index) in str(raised.value) and str(index.parent) not in raised.value.public
    assert "docstore-000001.sqlite is empty" in raised.value.public


def test_a_running_servers_search_names_damage_found_after_a_later_sync(bot, tmp_path):
    """`chatbot serve` searches through ``BotDocuments``: damage met while following a sync's
    new generation escaped as an unexpected error, which the API answers as 'internal error'
    and the Documents tab as Gradio's plain error, instead of the one line naming the file."""
    import gradio as gr

    from app.build import bot_documents
    from app.ui.documents import DocumentActions
    from chatbot.config_file import load_config

    index, config = bot
    documents = bot_documents(load_config(config))
    assert documents.hits("installer", 1)  # the server's retriever is open on generation 1
    (tmp_path / "docs" / "more.md").write_text("# More\n\nAnother page.\n")
    assert run("index", "sync", "--config", config).exit_code == 0
    (index / "faiss-000002.index").unlink()
    with pytest.raises(DocumentIndexError, match="faiss-000002.index is missing"):
        documents.hits("installer", 1)
    with pytest.raises(gr.Error, match="faiss-000002.index is missing"):
        DocumentActions(documents).search("installer", 1, "hybrid")


def test_sync_as_a_process_exits_1_with_one_line_and_no_stray_docstore(bot):
    """The tester's report: `rm faiss-00000N.index` then `chatbot index sync` printed a
    RuntimeError traceback and left docstore-00000N+1.sqlite behind."""
    index, config = bot
    (index / "faiss-000001.index").unlink()
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "app", "index", "sync", "--config", config],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr == (f"error: the index at {index} is damaged: "
                           f"faiss-000001.index is missing{REBUILD}")
    assert files(index) == [".lock", "bm25-000001", "docstore-000001.sqlite", "manifest.json"]


def test_a_file_removed_by_a_newer_sync_is_not_damage(bot, tmp_path):
    """A reader that read the manifest just before a sync committed finds the old files gone:
    it opens the new generation instead of calling the index damaged."""
    index, config = bot
    old = Store.open(index).manifest
    (tmp_path / "docs" / "faq.md").write_text("# FAQ\n\nIt costs nothing.\n")
    assert run("index", "sync", "--config", config).exit_code == 0
    assert not (index / old.files.docstore).exists()
    assert store_files.in_force(index, old).generation == 2
    (index / "faiss-000002.index").unlink()
    with pytest.raises(IndexDamagedError, match="faiss-000002.index is missing"):
        store_files.in_force(index, old)


def test_a_damaged_manifest_is_repaired_by_the_rebuild_its_error_asks_for(bot):
    """The manifest's error ends with `--rebuild`; the rebuild must not fail on it again."""
    index, config = bot
    (index / "manifest.json").write_text("")
    searched = run("index", "search", "port", "--config", config)
    assert searched.exit_code == 1 and searched.stderr.endswith(REBUILD)
    assert "manifest.json is not valid JSON" in searched.stderr
    rebuilt = run("index", "sync", "--rebuild", "--config", config)
    assert rebuilt.exit_code == 0 and rebuilt.stdout.startswith("2 added")
    hits = json.loads(run("index", "search", "port", "--json", "--config", config).stdout)
    assert hits[0]["source"].endswith("ports.md")


@pytest.mark.parametrize("damage", ["faiss-000002.index", "docstore-000002.sqlite"])
def test_rebuilding_a_damaged_index_keeps_uploads_and_files_synced_by_name(bot, tmp_path,
                                                                           damage):
    """The user's report: `rm faiss-*.index`, then `index sync --rebuild docs/` dropped the
    uploads and the files synced by name, and said "0 removed"."""
    index, config = bot
    notes = tmp_path / "notes.md"
    notes.write_text("# Notes\n\nRefunds take five days.\n")
    upload = tmp_path / "data" / "uploads" / "form.md"
    upload.parent.mkdir(parents=True)
    upload.write_text("# Form\n\nFill in the leave form.\n")
    assert run("index", "sync", str(notes), str(upload), "--config", config).exit_code == 0
    (index / damage).unlink()
    rebuilt = run("index", "sync", "--rebuild", str(tmp_path / "docs"), "--config", config)
    assert (rebuilt.exit_code, rebuilt.stderr) == (0, "")
    assert rebuilt.stdout.startswith("4 added, 0 updated, 0 unchanged, 0 removed, 0 failed")
    listed = [doc["path"] for doc in json.loads(run("index", "list", "--json", "--config",
                                                    config).stdout)]
    assert str(notes) in listed and str(upload) in listed and len(listed) == 4


def test_a_rebuild_that_cant_read_the_document_list_says_what_to_pass(bot, tmp_path):
    """With the manifest unreadable, the files synced by name can't be known: the rebuild says
    so, and names the uploads folder to pass."""
    index, config = bot
    notes = tmp_path / "notes.md"
    notes.write_text("# Notes\n\nRefunds take five days.\n")
    assert run("index", "sync", str(notes), "--config", config).exit_code == 0
    (index / "manifest.json").write_text("")
    rebuilt = run("index", "sync", "--rebuild", "--config", config)
    assert rebuilt.exit_code == 0 and rebuilt.stdout.startswith("2 added")
    assert rebuilt.stderr == (
        f"warning: the index's list of documents ({index / 'manifest.json'}) can't be read, so "
        f"files it held outside {tmp_path / 'docs'} were not re-indexed; sync each again "
        f"by path (web UI uploads are in {tmp_path / 'data' / 'uploads'}): "
        "chatbot index sync PATH\n")
