"""A sync killed mid-way leaves the previous index loadable and consistent; two syncs at once
are serialized by the lock. Real ``python -m app index sync`` processes, real SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import faiss
import numpy as np
from index_helpers import write_corpus

from index.search import Retriever
from index.store import Store
from index.embed import HashEmbedder

ROOT = Path(__file__).resolve().parents[1]


def start_sync(tmp_path: Path, *paths: Path) -> subprocess.Popen:
    config = tmp_path / "bot.yaml"
    config.write_text('models:\n  embedder: "hash:64"\nindex:\n  chunk_tokens: 40\n'
                      '  chunk_overlap: 8\n')
    env = os.environ | {"PYTHONPATH": str(ROOT), "CHATBOT_DATA_DIR": str(tmp_path / "data")}
    return subprocess.Popen([sys.executable, "-m", "app", "index", "sync", "--config",
                             str(config), *map(str, paths)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def assert_consistent(directory: Path) -> Store:
    """Manifest, docstore, FAISS and BM25 agree on every chunk, and search works."""
    store = Store.open(directory)
    ids, _ = store.docstore.all_chunks()
    assert store.manifest.counts.chunks == len(ids) == store.faiss.ntotal
    assert set(faiss.vector_to_array(store.faiss.id_map)) == set(ids)
    assert np.array_equal(store.bm25.ids, ids)
    assert sorted(store.manifest.documents) == [d.source for d in store.documents()]
    hits = Retriever(store, HashEmbedder(64), mode="hybrid", k=3).search("Topic1 subject1")
    assert len(hits) == 3
    return store


def wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.002)


def test_killed_sync_leaves_previous_index_loadable(tmp_path):
    docs = tmp_path / "docs"
    write_corpus(docs, 30)
    assert start_sync(tmp_path, docs).wait() == 0
    index = tmp_path / "data" / "index"
    before = {d.source: d.content_hash for d in Store.open(index).documents()}
    write_corpus(docs, 1500, words=150, prefix="more")
    staged = index / "docstore-000002.sqlite"
    # Kill while embedding, and while the commit is writing the new generation's files.
    moments = [lambda: staged.exists() and time.sleep(0.3) is None,
               lambda: (index / "bm25-000002").exists()]
    for moment in moments:
        process = start_sync(tmp_path, docs)
        wait_for(lambda: moment() or process.poll() is not None)
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert process.returncode == -signal.SIGKILL, "the sync finished before it was killed"
        store = assert_consistent(index)
        assert store.manifest.generation == 1
        assert {d.source: d.content_hash for d in store.documents()} == before
    finished = start_sync(tmp_path, docs)
    assert finished.wait() == 0, finished.stderr.read()
    store = assert_consistent(index)
    assert len(store.documents()) == 1530 and store.manifest.generation == 2
    assert sorted(p.name for p in index.iterdir()) == [
        ".lock", "bm25-000002", "docstore-000002.sqlite", "faiss-000002.index", "manifest.json"]


def test_two_syncs_at_once_are_serialized(tmp_path):
    write_corpus(tmp_path / "a", 600, prefix="a")
    write_corpus(tmp_path / "b", 600, prefix="b")
    first, second = start_sync(tmp_path, tmp_path / "a"), start_sync(tmp_path, tmp_path / "b")
    assert first.wait() == 0 and second.wait() == 0, (first.stderr.read(), second.stderr.read())
    store = assert_consistent(tmp_path / "data" / "index")
    assert len(store.documents()) == 1200  # neither sync lost the other's files
    assert store.manifest.generation == 2


def test_ctrl_c_while_the_sync_commits_leaves_none_of_its_files(tmp_path):
    """Interrupted while writing the new generation (its BM25 index, say), a sync left that
    generation's files, as large as the index, on the disk until the next sync."""
    docs = tmp_path / "docs"
    write_corpus(docs, 30)
    assert start_sync(tmp_path, docs).wait() == 0
    index = tmp_path / "data" / "index"
    write_corpus(docs, 1500, words=150, prefix="more")
    process = start_sync(tmp_path, docs)
    wait_for(lambda: (index / "bm25-000002").exists() or process.poll() is not None, 300)
    process.send_signal(signal.SIGINT)
    _, said = process.communicate(timeout=120)
    assert process.returncode == 1, "the sync finished before it was interrupted"
    assert "interrupted; the index is as the last finished sync left it" in said
    assert sorted(p.name for p in index.iterdir()) == [
        ".lock", "bm25-000001", "docstore-000001.sqlite", "faiss-000001.index", "manifest.json"]
    assert assert_consistent(index).manifest.generation == 1
