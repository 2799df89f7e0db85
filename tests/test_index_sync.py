"""Incremental sync: nothing re-embedded twice, changes and deletes followed, same as a full run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
from index_helpers import CountingEmbedder, write_corpus

import index.sync
from index.errors import IndexMismatchError, IndexMissingError
from index.manifest import IndexManifest, IndexSettings
from index.search import Retriever
from index.store import Store
from index.sync import sync


def settings(index_type: str = "flat", embedder: str = "hash:64", tokens: int = 40) -> IndexSettings:
    return IndexSettings(embedder, None, tokens, 8, index_type=index_type)


def open_store(path, **kw) -> Store:
    return Store.open(path, settings(**kw), create=True)


def contents(path) -> dict:
    """(source, location, text) -> vector of every chunk in the index at ``path``."""
    store = Store.open(path)
    chunks = store.chunks(range(1, 10_000))
    vectors = store.vectors(list(chunks))
    return {(c.source, c.location, c.text): tuple(np.round(v, 5))
            for c, v in zip(chunks.values(), vectors)}


def test_second_sync_embeds_nothing(tmp_path):
    write_corpus(tmp_path / "docs", 12)
    embedder = CountingEmbedder()
    first = sync([tmp_path / "docs"], open_store(tmp_path / "ix"), embedder)
    assert len(first.added) == 12 and first.embedded == first.chunks > 12
    embedder.calls, embedder.texts = 0, []
    again = sync([tmp_path / "docs"], open_store(tmp_path / "ix"), embedder)
    assert (embedder.calls, again.chunks, len(again.unchanged)) == (0, 0, 12)
    assert Store.open(tmp_path / "ix").manifest.generation == 1  # nothing rewritten


def test_changed_file_is_re_embedded_and_deleted_file_disappears(tmp_path):
    paths = write_corpus(tmp_path / "docs", 6)
    embedder = CountingEmbedder()
    sync([tmp_path / "docs"], open_store(tmp_path / "ix"), embedder)
    text = paths[2].read_text()
    paths[2].write_text(text.replace("Second part", "A rewritten second part"))
    paths[4].unlink()
    embedder.texts = []
    report = sync([tmp_path / "docs"], open_store(tmp_path / "ix"), embedder)
    assert report.updated == [str(paths[2])] and report.removed == [str(paths[4])]
    assert len(report.unchanged) == 4
    # Only the chunk whose text changed is encoded again; its unchanged sibling keeps its vector.
    # The changed chunk (in its heading path) and its one sentence; nothing else.
    assert len(embedder.texts) == 2 and all("rewritten" in text for text in embedder.texts)
    store = Store.open(tmp_path / "ix")
    assert str(paths[4]) not in {d.source for d in store.documents()}
    hits = Retriever(store, embedder, mode="bm25", k=3).search("subject4 Topic4")
    assert all(h.source != str(paths[4]) for h in hits)
    hits = Retriever(store, embedder, mode="bm25", k=1).search("rewritten")
    assert hits[0].source == str(paths[2])


def test_a_file_deleted_while_the_sync_runs_is_removed_not_failed(tmp_path):
    """A file listed, then deleted before it was read (moved away, an editor's temporary file
    saved over its original) failed the sync with "unreadable: No such file or directory", and
    its chunks stayed searchable after the sync had finished."""
    paths = write_corpus(tmp_path / "docs", 6)
    embedder = CountingEmbedder()
    assert sync([tmp_path / "docs"], open_store(tmp_path / "ix"), embedder).ok
    scratch = tmp_path / "docs" / "doc0003.md~tmp.md"  # listed after doc0003.md, read after it

    def delete_after_listing(done, total, source):
        if source == str(paths[3]):
            paths[4].unlink()
            scratch.unlink()

    scratch.write_text("# Draft\n\nAn editor's copy, renamed over the original in a moment.\n")
    report = sync([tmp_path / "docs"], open_store(tmp_path / "ix"), embedder,
                  progress=delete_after_listing)
    assert report.failed == [] and report.ok
    assert report.removed == [str(paths[4])] and report.added == []
    store = Store.open(tmp_path / "ix")
    assert str(paths[4]) not in {d.source for d in store.documents()}
    assert store.manifest.counts.documents == 5
    hits = Retriever(store, embedder, mode="bm25", k=3).search("subject4 Topic4")
    assert all(h.source != str(paths[4]) for h in hits)


@pytest.mark.parametrize("index_type", ["flat", "hnsw"])
def test_incremental_sync_equals_full_sync(tmp_path, index_type):
    docs = tmp_path / "docs"
    paths = write_corpus(docs, 10)
    sync([docs], open_store(tmp_path / "inc", index_type=index_type), CountingEmbedder())
    paths[1].write_text("# New title\n\nCompletely new body.\n")
    paths[3].unlink()
    paths[7].write_text(paths[7].read_text() + "\nAppended paragraph.\n")
    write_corpus(docs, 2, prefix="extra")
    sync([docs], open_store(tmp_path / "inc", index_type=index_type), CountingEmbedder())
    sync([docs], open_store(tmp_path / "full", index_type=index_type), CountingEmbedder())
    incremental, full = contents(tmp_path / "inc"), contents(tmp_path / "full")
    assert incremental == full and len(full) > 20
    store = Store.open(tmp_path / "inc")
    assert store.faiss.ntotal - len(store.tombstones()) == len(full)


def test_hnsw_filters_removed_vectors_then_rebuilds_without_them(tmp_path):
    paths = write_corpus(tmp_path / "docs", 10)
    sync([tmp_path / "docs"], open_store(tmp_path / "ix", index_type="hnsw"), CountingEmbedder())
    paths[0].unlink()
    sync([tmp_path / "docs"], open_store(tmp_path / "ix", index_type="hnsw"), CountingEmbedder())
    store = Store.open(tmp_path / "ix")
    assert len(store.tombstones()) == 3 and store.faiss.ntotal == 30  # 10% buried: kept
    hits = Retriever(store, CountingEmbedder(), mode="dense", k=30).search("Topic0 subject0")
    assert len(hits) == 27 and all(h.source != str(paths[0]) for h in hits)
    for path in paths[1:3]:
        path.unlink()
    sync([tmp_path / "docs"], open_store(tmp_path / "ix", index_type="hnsw"), CountingEmbedder())
    store = Store.open(tmp_path / "ix")
    assert len(store.tombstones()) == 0 and store.faiss.ntotal == 21  # 30% > 20%: rebuilt


def test_auto_switches_to_hnsw_past_the_threshold_and_back(tmp_path, monkeypatch):
    import index.faiss_kinds

    monkeypatch.setattr(index.faiss_kinds, "AUTO_HNSW_CHUNKS", 20)
    paths = write_corpus(tmp_path / "docs", 5)  # 3 chunks each
    sync([tmp_path / "docs"], open_store(tmp_path / "ix", index_type="auto"), CountingEmbedder())
    assert Store.open(tmp_path / "ix").kind == "flat"
    write_corpus(tmp_path / "docs", 3, prefix="more")
    sync([tmp_path / "docs"], open_store(tmp_path / "ix", index_type="auto"), CountingEmbedder())
    store = Store.open(tmp_path / "ix")
    assert (store.kind, store.stats()["index_type"], store.faiss.ntotal) == ("hnsw", "auto", 24)
    hits = Retriever(store, CountingEmbedder(), mode="dense", k=1).search("Topic2 subject2")
    assert hits[0].source == str(paths[2])
    for path in paths:
        path.unlink()
    sync([tmp_path / "docs"], open_store(tmp_path / "ix", index_type="auto"), CountingEmbedder())
    store = Store.open(tmp_path / "ix")
    assert (store.kind, store.faiss.ntotal, len(store.tombstones())) == ("flat", 9, 0)


def test_changing_index_type_converts_without_re_embedding(tmp_path):
    write_corpus(tmp_path / "docs", 4)
    sync([tmp_path / "docs"], open_store(tmp_path / "ix"), CountingEmbedder())
    embedder = CountingEmbedder()
    report = sync([tmp_path / "docs"], open_store(tmp_path / "ix", index_type="hnsw"), embedder)
    assert embedder.calls == 0 and len(report.unchanged) == 4
    store = Store.open(tmp_path / "ix")
    assert (store.kind, store.faiss.ntotal) == ("hnsw", 12)
    # The whole chunk text: in 64 hash buckets, two words can lose to the shared "Title > Part".
    query = "Second part of doc 3: subject3 details."
    assert Retriever(store, embedder, mode="dense", k=1).search(query)[0].source \
        .endswith("doc0003.md")


def test_syncing_one_folder_leaves_another_alone(tmp_path):
    write_corpus(tmp_path / "a", 3, prefix="a")
    write_corpus(tmp_path / "b", 2, prefix="b")
    sync([tmp_path / "a"], open_store(tmp_path / "ix"), CountingEmbedder())
    report = sync([tmp_path / "b"], open_store(tmp_path / "ix"), CountingEmbedder())
    assert report.removed == [] and len(Store.open(tmp_path / "ix").documents()) == 5


def test_progress_is_reported_per_file(tmp_path):
    """The count of files comes first: the bar said '0file [00:45, ?file/s]' while one large
    PDF was read, the total unknown until that file was done."""
    write_corpus(tmp_path / "docs", 4)
    seen = []
    sync([tmp_path / "docs"], open_store(tmp_path / "ix"), CountingEmbedder(),
         progress=lambda done, total, source: seen.append((done, total, bool(source))))
    assert seen == [(0, 4, False), (1, 4, True), (2, 4, True), (3, 4, True), (4, 4, True)]


def test_opening_with_other_settings_says_to_reindex(tmp_path):
    write_corpus(tmp_path / "docs", 2)
    sync([tmp_path / "docs"], open_store(tmp_path / "ix"), CountingEmbedder())
    with pytest.raises(IndexMismatchError) as error:
        Store.open(tmp_path / "ix", settings(embedder="hash:32", tokens=100))
    assert str(error.value) == (
        f"{tmp_path / 'ix' / 'manifest.json'}: built with other settings "
        "(embedder is 'hash:64' in the index but 'hash:32' in the config; chunk_tokens is 40 in "
        "the index but 100 in the config); re-index it: chatbot index sync --rebuild")


def test_embedder_of_other_dimension_is_refused(tmp_path):
    write_corpus(tmp_path / "docs", 2)
    sync([tmp_path / "docs"], open_store(tmp_path / "ix"), CountingEmbedder())
    with pytest.raises(IndexMismatchError, match="dimension is 64 in the index but 32"):
        Store.open(tmp_path / "ix", IndexSettings("hash:64", 32, 40, 8))
    narrow = CountingEmbedder(32)
    narrow.name = "hash:64"  # same name, other model: caught when its vectors meet the index
    (tmp_path / "docs" / "new.md").write_text("# New\n\nnew text")
    with pytest.raises(IndexMismatchError, match="holds 64-d vectors, the embedder makes 32-d"):
        sync([tmp_path / "docs"], open_store(tmp_path / "ix"), narrow)
    with pytest.raises(IndexMismatchError, match="query vectors have 32 dimensions, the index 64"):
        Retriever(Store.open(tmp_path / "ix"), narrow, mode="dense").search("text")
    assert len(Store.open(tmp_path / "ix").documents()) == 2  # the failed sync changed nothing


def test_old_format_version_says_to_reindex(tmp_path):
    write_corpus(tmp_path / "docs", 1)
    sync([tmp_path / "docs"], open_store(tmp_path / "ix"), CountingEmbedder())
    path = tmp_path / "ix" / "manifest.json"
    path.write_text(json.dumps(json.loads(path.read_text()) | {"format_version": 0}))
    with pytest.raises(IndexMismatchError, match="schema version 0, this version of chatbot-builder reads 1; re-index"):
        Store.open(tmp_path / "ix")


def test_rebuild_changes_settings(tmp_path):
    write_corpus(tmp_path / "docs", 2)
    sync([tmp_path / "docs"], open_store(tmp_path / "ix"), CountingEmbedder())
    new = settings(embedder="hash:32", tokens=100)
    report = sync([tmp_path / "docs"], Store(tmp_path / "ix", IndexManifest(new)), CountingEmbedder(32),
                  rebuild=new)
    assert len(report.added) == 2
    assert Store.open(tmp_path / "ix", new).stats()["dimension"] == 32


def test_missing_index_says_how_to_build_one(tmp_path):
    with pytest.raises(IndexMissingError, match="no index at .* yet; build one: chatbot index sync"):
        Store.open(tmp_path / "nothing")


def test_rebuild_keeps_files_indexed_by_name_and_counts_those_gone(tmp_path):
    write_corpus(tmp_path / "docs", 2)
    extra = write_corpus(tmp_path / "uploads", 2, prefix="up")
    sync([tmp_path / "docs"], open_store(tmp_path / "ix"), CountingEmbedder())
    sync(extra, open_store(tmp_path / "ix"), CountingEmbedder())  # e.g. web UI uploads
    extra[1].unlink()
    new = settings(tokens=100)
    report = sync([tmp_path / "docs"], Store(tmp_path / "ix", IndexManifest(new)),
                  CountingEmbedder(), rebuild=new)
    assert len(report.added) == 3 and report.removed == [str(extra[1])]
    assert str(extra[0]) in Store.open(tmp_path / "ix", new).hashes


def test_a_rebuild_that_waited_for_another_sync_keeps_the_files_that_sync_added(tmp_path):
    """A web UI upload indexed while `chatbot index sync --rebuild` waited for the lock was
    left out of the rebuilt index: the rebuild read the list of indexed files before waiting."""
    write_corpus(tmp_path / "docs", 2)
    sync([tmp_path / "docs"], open_store(tmp_path / "ix"), CountingEmbedder())
    upload = write_corpus(tmp_path / "uploads", 1, prefix="up")
    inside, go_on = threading.Event(), threading.Event()

    def hold_the_lock(done: int, total: int, path: str) -> None:
        inside.set()
        go_on.wait(30)

    uploading = threading.Thread(target=sync, args=(upload, open_store(tmp_path / "ix"),
                                                    CountingEmbedder()),
                                 kwargs={"progress": hold_the_lock})
    uploading.start()
    assert inside.wait(30)
    reports = []
    rebuilding = threading.Thread(target=lambda: reports.append(sync(
        [tmp_path / "docs"], Store(tmp_path / "ix", IndexManifest(settings())),
        CountingEmbedder(), rebuild=settings())))
    rebuilding.start()
    rebuilding.join(1.5)  # waiting for the lock the upload's sync holds
    go_on.set()
    uploading.join(30)
    rebuilding.join(30)
    assert len(reports[0].added) == 3
    assert str(upload[0]) in Store.open(tmp_path / "ix").hashes


def test_a_synced_folder_renamed_leaves_no_stale_documents(tmp_path):
    write_corpus(tmp_path / "manuals", 2)
    sync([tmp_path / "manuals"], open_store(tmp_path / "ix"), CountingEmbedder())
    (tmp_path / "manuals").rename(tmp_path / "handbooks")
    report = sync([tmp_path / "handbooks"], open_store(tmp_path / "ix"), CountingEmbedder())
    assert len(report.removed) == 2 and len(report.added) == 2
    assert all("handbooks" in source for source in Store.open(tmp_path / "ix").hashes)


def test_a_second_sync_says_it_waits_for_the_first(tmp_path):
    write_corpus(tmp_path / "docs", 1)
    (tmp_path / "bot.yaml").write_text('data_dir: data\nmodels:\n  embedder: "hash:64"\n'
                                       "index:\n  paths: [docs]\n")
    (tmp_path / "data" / "index").mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK,
                               str(tmp_path / "data" / "index" / ".lock")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "held\n"  # another process's sync holds the lock
    second = subprocess.Popen([sys.executable, "-m", "app", "index", "sync", "--config",
                               str(tmp_path / "bot.yaml")], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "CHATBOT_DATA_DIR": ""})
    give_up = threading.Timer(60, holder.kill)  # no word of waiting: the lock goes anyway
    give_up.start()
    said = second.stderr.readline()  # the lock is held until the second sync says it waits
    give_up.cancel()
    holder.communicate("release\n", timeout=30)
    out, err = second.communicate(timeout=120)
    assert holder.returncode == 0 and second.returncode == 0, said + err
    assert out.startswith("1 added")
    assert "waiting for another sync of" in said


HOLD_LOCK = """
import sys
from filelock import FileLock
with FileLock(sys.argv[1]):
    print("held", flush=True)
    sys.stdin.readline()
"""


def test_one_large_file_reports_its_chunks_as_they_are_embedded(tmp_path, monkeypatch):
    """Progress counted files only: a 300-page PDF showed nothing for minutes while it was
    embedded. Now the chunks embedded of those to embed are reported as they go, in order, and
    the index holds what it held before."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "manual.md").write_text("\n\n".join(
        f"Section {n} says that form {n} is filed before day {n} of the year, by post or online."
        for n in range(700)))
    events = []
    report = sync([tmp_path / "docs"], open_store(tmp_path / "ix"), CountingEmbedder(),
                  progress=lambda done, total, source: events.append(("files", done, total)),
                  embedding=lambda done, total: events.append(("chunks", done, total)))
    chunks = [event for event in events if event[0] == "chunks"]
    assert len(chunks) > 1 and ("files", 1, 1) in events
    assert [done for _, done, _ in chunks] == sorted({done for _, done, _ in chunks})
    assert chunks[-1] == ("chunks", report.embedded, report.embedded)
    monkeypatch.setattr(index.sync, "EMBED_SLICE", 10**6)  # every chunk in one encode call
    sync([tmp_path / "docs"], open_store(tmp_path / "whole"), CountingEmbedder())
    assert contents(tmp_path / "ix") == contents(tmp_path / "whole")


@pytest.mark.parametrize("counts, shown", [
    ({"chunks": 1, "embedded": 1, "sentences": 1},
     "1 chunk written (1 embedded, with 1 of its sentences)"),
    ({"chunks": 2, "embedded": 0}, "2 chunks written (0 embedded)"),
    ({"chunks": 3, "embedded": 3, "sentences": 7},
     "3 chunks written (3 embedded, with 7 of their sentences)"),
])
def test_the_summary_counts_one_chunk_and_one_sentence_in_the_singular(counts, shown) -> None:
    """`chatbot index sync` of one short file printed '1 chunks written'."""
    report = index.sync.SyncReport(added=["a.md"], **counts)
    assert report.summary() == ("1 added, 0 updated, 0 unchanged, 0 removed, 0 failed; "
                                f"{shown} in 0.0 s")


def test_the_files_are_counted_all_done_only_once_their_chunks_are_embedded(tmp_path):
    """While the last file (a large one) was embedded the bar already said 1/1, as if the
    sync had finished; now the count of files reaches the total after the embedding."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a-note.md").write_text("Forms are filed by post.\n")
    (tmp_path / "docs" / "manual.md").write_text("\n\n".join(
        f"Section {n} says that form {n} is filed before day {n} of the year, by post or online."
        for n in range(700)))
    events = []
    sync([tmp_path / "docs"], open_store(tmp_path / "ix"), CountingEmbedder(),
         progress=lambda done, total, source: events.append(("files", done, total)),
         embedding=lambda done, total: events.append(("chunks", done, total)))
    assert events[0] == ("files", 0, 2) and events[-1] == ("files", 2, 2)
    assert ("files", 2, 2) not in events[:-1] and events[-2][0] == "chunks"
