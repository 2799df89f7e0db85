"""A server searches on several threads while `chatbot index sync` commits new generations in
another process: every search reads one whole generation and none fails."""

from __future__ import annotations

import threading
from pathlib import Path

import yaml

from app.build import bot_documents, bot_index
from chatbot.config_file import load_config
from chatbot.indexing import index_stats, list_documents, sync_paths

TOPICS = ["passport renewal", "driving licence", "council tax", "parental leave",
          "pension credit", "visa fees", "blue badge", "tax returns"]


def page(topic: str, edition: int) -> str:
    """A page of a few sections whose wording changes with each edition."""
    return f"# {topic.title()}\n\n" + "\n\n".join(
        f"## Step {step}\n\nTo apply for {topic} (edition {edition}), fill in form {step} "
        f"and send it with proof of identity. Processing takes {step + edition} weeks."
        for step in range(1, 6))


def test_searches_on_several_threads_go_on_while_syncs_commit(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    for topic in TOPICS:
        (docs / f"{topic.replace(' ', '-')}.md").write_text(page(topic, 0))
    config_path = tmp_path / "bot.yaml"
    config_path.write_text(yaml.safe_dump({
        "data_dir": str(tmp_path / "data"), "models": {"embedder": "hash:64"},
        "index": {"paths": [str(docs)]}, "retrieval": {"min_score": None}}))
    config = load_config(config_path)
    sync_paths(bot_index(config))
    documents = bot_documents(config)  # the engine's search, shared by the server's threads
    failures: list[str] = []
    found: list[int] = []
    done = threading.Event()

    def search() -> None:
        while not done.is_set():
            try:
                found.append(len(documents.hits("how long does a passport renewal take", 4)))
            except Exception as exc:  # noqa: BLE001 - any failure is the finding
                failures.append(repr(exc))
                return

    readers = [threading.Thread(target=search) for _ in range(3)]
    for reader in readers:
        reader.start()
    try:
        for edition in range(1, 13):  # change, add and remove pages, then commit
            topic = TOPICS[edition % len(TOPICS)]
            (docs / f"{topic.replace(' ', '-')}.md").write_text(page(topic, edition))
            (docs / f"notice-{edition}.md").write_text(page(f"notice {edition}", edition))
            (docs / f"notice-{edition - 1}.md").unlink(missing_ok=True)
            sync_paths(bot_index(config))
    finally:
        done.set()
        for reader in readers:
            reader.join()
    assert failures == []
    assert len(found) > 30 and min(found) == 4


def test_list_and_stats_while_syncs_commit_read_the_new_generation(tmp_path: Path) -> None:
    """`chatbot index stats` (or list, or the Documents tab's table) while a sync committed
    failed with a FileNotFoundError traceback, or said the index was damaged and to rebuild
    it: the sync had removed the older generation's files as they were opened."""
    docs = tmp_path / "docs"
    docs.mkdir()
    config_path = tmp_path / "bot.yaml"
    config_path.write_text(yaml.safe_dump({
        "data_dir": str(tmp_path / "data"), "models": {"embedder": "hash:64"},
        "index": {"paths": [str(docs)]}}))
    index = bot_index(load_config(config_path))
    (docs / "first.md").write_text(page("first", 0))
    sync_paths(index)
    failures: list[str] = []
    reads = {"list": 0, "stats": 0}
    done = threading.Event()

    def read(name, what) -> None:
        while not done.is_set():
            try:
                what(index)
                reads[name] += 1
            except Exception as exc:  # noqa: BLE001 - any failure is the finding
                failures.append(f"{name}: {exc!r}")

    readers = [threading.Thread(target=read, args=item)
               for item in (("list", list_documents), ("stats", index_stats))]
    for reader in readers:
        reader.start()
    try:
        for edition in range(1, 41):
            (docs / f"notice-{edition}.md").write_text(page(f"notice {edition}", edition))
            sync_paths(index)
    finally:
        done.set()
        for reader in readers:
            reader.join()
    assert failures == []
    assert min(reads.values()) > 40


def test_a_server_follows_a_rebuild_with_other_chunking_and_says_to_restart_for_another_embedder(
        tmp_path: Path) -> None:
    """After `chatbot index sync --rebuild` with a new index.chunk_tokens, a running server's
    every search failed, asking for the rebuild just made: it checked the new generation
    against the settings of the one it had open."""
    import pytest

    from chatbot.errors import DocumentIndexError

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "passport.md").write_text(page("passport renewal", 0))

    def config(**index):
        path = tmp_path / "bot.yaml"
        path.write_text(yaml.safe_dump({
            "data_dir": str(tmp_path / "data"), "models": {"embedder": index.pop("embedder")},
            "index": {"paths": [str(docs)], **index}, "retrieval": {"min_score": None}}))
        return load_config(path)

    serving = config(embedder="hash:64")
    sync_paths(bot_index(serving))
    documents = bot_documents(serving)  # the server's, opened on the first generation
    assert len(documents.hits("passport renewal", 2)) == 2
    (docs / "visa.md").write_text(page("visa fees", 0))
    sync_paths(bot_index(config(embedder="hash:64", chunk_tokens=100)), rebuild=True)
    assert "docs/visa.md" in {h.source for h in documents.hits("visa fees form", 4)}
    sync_paths(bot_index(config(embedder="hash:32")), rebuild=True)
    with pytest.raises(DocumentIndexError, match="rebuilt with embedder 'hash:32' .*; restart "
                                                 "it with the config the index was built"):
        documents.hits("passport renewal", 2)
