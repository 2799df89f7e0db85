"""Dense, BM25 and hybrid search; thresholds, MMR, source filters, a persisted BM25 index."""

from __future__ import annotations

import pytest
from index_helpers import CountingEmbedder

from index.fusion import RRF_K
from index.manifest import IndexSettings
from index.search import Retriever
from index.store import Store
from index.sync import sync

DOCS = {
    "pump.md": "# Pump\n\nThe pump needs fresh oil every week and a new filter every month.",
    "boiler.md": "# Boiler\n\nBleed the radiators when the boiler pressure drops below one bar.",
    "garden/roses.txt": "Prune roses in late winter, just above an outward facing bud.",
    "garden/lawn.txt": "Mow the lawn weekly in summer and leave the clippings on it.",
    "copy1.txt": "Alarm code reset: hold the red button for ten seconds.",
    "copy2.txt": "Alarm code reset: hold the red button for ten seconds!",
    "copy3.txt": "Alarm code reset - hold the red button for ten seconds.",
    "alarm.txt": "Alarm code reset without the red button: call the installer.",
}


def Embedder() -> CountingEmbedder:  # noqa: N802 - wide, so unrelated words rarely collide
    return CountingEmbedder(1024)


@pytest.fixture()
def store(tmp_path) -> Store:
    for name, text in DOCS.items():
        (tmp_path / "docs" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "docs" / name).write_text(text)
    index = Store.open(tmp_path / "ix", IndexSettings("hash:1024", None, 60, 8), create=True)
    sync([tmp_path / "docs"], index, Embedder())
    return Store.open(tmp_path / "ix")


def names(hits) -> list[str]:
    return [h.source.split("/docs/")[1] for h in hits]


@pytest.mark.parametrize("mode", ["dense", "bm25", "hybrid"])
def test_each_mode_finds_the_document(store, mode):
    hits = Retriever(store, Embedder(), mode=mode, k=2).search("pump oil filter")
    assert names(hits)[0] == "pump.md" and [h.rank for h in hits] == list(range(1, len(hits) + 1))
    assert hits[0].location == "Pump" and "fresh oil" in hits[0].text


def test_hybrid_fuses_ranks(store):
    hit = Retriever(store, Embedder(), mode="hybrid", k=1).search("pump oil filter")[0]
    # First in all three: dense 2, bm25 1, best sentence 1.
    assert hit.score == pytest.approx((2 + 1 + 1) / (RRF_K + 1))
    assert set(hit.scores) == {"dense", "bm25", "sentence"}


def test_min_score_drops_weak_dense_matches(store):
    retriever = Retriever(store, Embedder(), mode="dense", k=5, min_score=0.3)
    assert names(retriever.search("pump oil filter")) == ["pump.md"]
    assert retriever.search("completely unrelated words") == []


def test_source_glob_filters_every_mode(store):
    for mode in ("dense", "bm25", "hybrid"):
        hits = Retriever(store, Embedder(), mode=mode, k=5).search(
            "roses lawn pump", source_glob="garden/*")
        assert sorted(names(hits)) == ["garden/lawn.txt", "garden/roses.txt"], mode


def test_mmr_skips_near_duplicates(store):
    query = "alarm code reset red button"
    plain = Retriever(store, Embedder(), mode="dense", k=3).search(query)
    assert sorted(names(plain)) == ["copy1.txt", "copy2.txt", "copy3.txt"]
    diverse = Retriever(store, Embedder(), mode="dense", k=2, mmr=True).search(query)
    assert "alarm.txt" in names(diverse)


def test_mmr_places_freed_by_merging_go_to_the_next_chunks(tmp_path):
    """MMR picked k chunks and no more: neighbours among them merged into one passage, and a
    search for 4 passages of an 8-chunk manual returned 2."""
    topics = ["pump", "boiler", "radiator", "filter", "valve", "thermostat", "alarm", "fuse"]
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "care.md").write_text("# Care\n\n" + "\n\n".join(
        f"Check the {t} of the heating system every week and write down what the {t} shows."
        for t in topics))
    index = Store.open(tmp_path / "ix", IndexSettings("hash:1024", None, 30, 4), create=True)
    sync([tmp_path / "docs"], index, Embedder())
    retriever = Retriever(Store.open(tmp_path / "ix"), Embedder(), mode="dense", k=4, mmr=True,
                          merge_neighbours=True, merge_max_words=40)
    assert len(retriever.search("check the heating system every week")) == 4


@pytest.mark.parametrize("merge", [False, True])
def test_a_text_under_two_names_takes_one_place(tmp_path, merge):
    """A copied file (docs/v1 and docs/v2 alike): the second copy would add nothing."""
    pages = {"v1/reset.txt": DOCS["copy1.txt"], "v2/reset.txt": DOCS["copy1.txt"],
             "alarm.txt": DOCS["alarm.txt"], "pump.md": DOCS["pump.md"]}
    for name, text in pages.items():
        (tmp_path / "docs" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "docs" / name).write_text(text)
    index = Store.open(tmp_path / "ix", IndexSettings("hash:1024", None, 60, 8), create=True)
    sync([tmp_path / "docs"], index, Embedder())
    for mode in ("dense", "bm25", "hybrid"):
        hits = Retriever(Store.open(tmp_path / "ix"), Embedder(), mode=mode, k=2,
                         merge_neighbours=merge).search("alarm code reset red button")
        found = sorted(name.split("/")[-1] for name in names(hits))
        assert found == ["alarm.txt", "reset.txt"], mode  # one copy and the other page


def test_bm25_is_loaded_from_disk_and_searching_writes_nothing(store):
    before = {p.name: p.stat().st_mtime_ns for p in store.directory.rglob("*")}
    retriever = Retriever(store, Embedder(), mode="bm25", k=1)
    assert names(retriever.search("radiators pressure")) == ["boiler.md"]
    loaded = store.bm25
    assert names(retriever.search("prune roses")) == ["garden/roses.txt"]
    assert store.bm25 is loaded
    assert {p.name: p.stat().st_mtime_ns for p in store.directory.rglob("*")} == before


def test_a_long_lived_retriever_sees_later_syncs(store, tmp_path):
    retriever = Retriever(store, Embedder(), mode="bm25", k=1)
    assert retriever.search("heat pump defrost") and names(retriever.search("defrost")) == []
    (tmp_path / "docs" / "heatpump.md").write_text("# Heat pump\n\nRun defrost mode in frost.")
    sync([tmp_path / "docs"], Store.open(tmp_path / "ix"), Embedder())
    assert names(retriever.search("defrost")) == ["heatpump.md"]


def test_unknown_mode_is_an_error(store):
    with pytest.raises(ValueError, match="unknown search mode 'sparse'; use one of dense, bm25"):
        Retriever(store, Embedder()).search("x", mode="sparse")
