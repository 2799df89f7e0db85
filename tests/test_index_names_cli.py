"""`chatbot index list` and `remove` name documents as search and the chat name them."""

from __future__ import annotations

import json

from test_index_cli import bot, run  # noqa: F401 (a fixture, found here by its name)


def test_remove_takes_an_upload_by_the_name_the_bot_shows(bot, monkeypatch):
    """The sources, log and web UI name an upload `uploads/notes.md`; `index remove` said
    "nothing indexed at or under <cwd>/uploads/notes.md" to that name."""
    tmp_path, config = bot
    upload = tmp_path / "data" / "uploads" / "notes.md"
    upload.parent.mkdir(parents=True)
    upload.write_text("# Notes\n\nRefunds take five days.\n")
    assert run("index", "sync", str(upload), "--config", config).exit_code == 0  # as the UI does
    hits = json.loads(run("index", "search", "refunds", "--mode", "bm25", "--json",
                          "--config", config).stdout)
    assert hits[0]["source"] == "uploads/notes.md"
    monkeypatch.chdir(tmp_path / "docs")  # no uploads/ folder here
    removed = run("index", "remove", "uploads/notes.md", "--config", config)
    assert (removed.exit_code, removed.stdout) == (
        0, "removed 1 document; deleted 1 uploaded file from uploads/\n")
    assert "uploads/notes.md" not in run("index", "list", "--config", config).stdout
    again = run("index", "remove", "uploads/notes.md", "--config", config)
    assert (again.exit_code, again.stderr) == (
        1, f"error: nothing indexed at or under {tmp_path / 'docs' / 'uploads' / 'notes.md'} or "
           f"{upload}; see `chatbot index list`\n")


def test_list_names_documents_as_the_chat_does_and_remove_takes_those_names(bot, monkeypatch):
    """`index list` showed each document's absolute path on the server, where search, the chat
    and the web UI name it `docs/install.md`; the name listed is one `index remove` takes."""
    tmp_path, config = bot
    manual = tmp_path / "manuals" / "handbook.md"  # synced by path, outside index.paths
    manual.parent.mkdir()
    manual.write_text("# Handbook\n\nHolidays are booked in May.\n")
    monkeypatch.chdir(tmp_path)
    assert run("index", "sync", "docs", str(manual), "--config", config).exit_code == 0
    listed = run("index", "list", "--config", config).stdout
    assert [line.split("  ")[-1] for line in listed.splitlines()[:-1]] == [
        "docs/faq.csv", "docs/install.md", "handbook.md"] and str(tmp_path) not in listed
    as_json = json.loads(run("index", "list", "--json", "--config", config).stdout)
    assert [(d["source"], d["path"]) for d in as_json][2] == ("handbook.md", str(manual))
    monkeypatch.chdir(tmp_path / "docs")  # no handbook.md here
    removed = run("index", "remove", "handbook.md", "--config", config)
    assert (removed.exit_code, removed.stdout) == (0, "removed 1 document\n")
    assert manual.exists()  # only the index forgets it


def test_two_documents_of_one_name_are_told_apart_and_removed_by_path(bot, monkeypatch):
    """Files synced from outside index.paths are shown by their file name: two `guide.md`
    from two folders were two identical lines, and `remove guide.md` would take both."""
    tmp_path, config = bot
    guides = [tmp_path / team / "guide.md" for team in ("sales", "support")]
    for guide in guides:
        guide.parent.mkdir()
        guide.write_text(f"# Guide\n\nHow {guide.parent.name} works.\n")
    assert run("index", "sync", *map(str, guides), "--config", config).exit_code == 0
    listed = run("index", "list", "--config", config).stdout.splitlines()
    assert [line.split("  ")[-1] for line in listed[:2]] == [f"guide.md ({g})" for g in guides]
    monkeypatch.chdir(tmp_path)
    both = run("index", "remove", "guide.md", "--config", config)
    assert (both.exit_code, both.stderr) == (
        1, f"error: guide.md names 2 documents ({guides[0]}, {guides[1]}); give the path of the "
           "one to remove\n")
    one = run("index", "remove", "support/guide.md", "--config", config)
    assert (one.exit_code, one.stdout) == (0, "removed 1 document\n")
    assert run("index", "remove", "guide.md", "--config", config).exit_code == 0


def _wiki(tmp_path):
    """``wiki/`` with one ``faq.md`` in each of two subfolders."""
    wiki = tmp_path / "wiki"
    for team in ("sales", "support"):
        (wiki / team).mkdir(parents=True)
        (wiki / team / "faq.md").write_text(f"# FAQ\n\nHow {team} handles refunds.\n")
    return wiki


def _listed(config):
    return [line.split("  ")[-1]
            for line in run("index", "list", "--config", config).stdout.splitlines()[:-1]]


def test_files_of_a_folder_synced_by_path_are_named_from_that_folder(bot, monkeypatch):
    """`index sync /x/wiki` named wiki/sales/faq.md and wiki/support/faq.md both `faq.md` in
    search, the chat and `index list`, so neither the model nor the user could tell them apart;
    they are named from the synced folder, as files under index.paths are, a rebuild keeps
    those names, and `remove` takes them."""
    tmp_path, config = bot
    wiki = _wiki(tmp_path)
    assert run("index", "sync", str(wiki), "--config", config).exit_code == 0
    hits = json.loads(run("index", "search", "refunds", "--mode", "bm25", "--json",
                          "--config", config).stdout)
    assert sorted(hit["source"] for hit in hits) == ["wiki/sales/faq.md", "wiki/support/faq.md"]
    assert _listed(config) == ["wiki/sales/faq.md", "wiki/support/faq.md"]
    monkeypatch.chdir(tmp_path)
    assert run("index", "sync", "--rebuild", "--config", config).exit_code == 0  # docs/ too
    assert _listed(config) == ["docs/faq.csv", "docs/install.md", "wiki/sales/faq.md",
                               "wiki/support/faq.md"]
    monkeypatch.chdir(tmp_path / "docs")  # no wiki/ here
    removed = run("index", "remove", "wiki/sales/faq.md", "--config", config)
    assert (removed.exit_code, removed.stdout) == (0, "removed 1 document\n")
    assert _listed(config)[2:] == ["wiki/support/faq.md"]


def test_an_index_from_before_synced_folders_were_recorded_names_files_as_it_did(bot):
    """An index written before the manifest recorded synced folders is read as before (files
    named by their file name); syncing the folder again names them from it, with nothing
    embedded again."""
    tmp_path, config = bot
    wiki = _wiki(tmp_path)
    assert run("index", "sync", str(wiki), "--config", config).exit_code == 0
    manifest = tmp_path / "data" / "index" / "manifest.json"
    older = json.loads(manifest.read_text())
    del older["folders"]
    manifest.write_text(json.dumps(older))
    assert _listed(config) == [f"faq.md ({wiki / team / 'faq.md'})"
                               for team in ("sales", "support")]
    again = run("index", "sync", str(wiki), "--config", config)
    assert again.stdout.startswith("0 added, 0 updated, 2 unchanged, 0 removed, 0 failed; "
                                   "0 chunks written (0 embedded)")
    assert _listed(config) == ["wiki/sales/faq.md", "wiki/support/faq.md"]


def test_a_removed_folder_no_longer_names_a_file_synced_by_itself(bot):
    """The index forgets a synced folder once nothing under it is indexed: a file of it synced
    by itself later is named by its file name, as any file synced by itself is."""
    tmp_path, config = bot
    wiki = _wiki(tmp_path)
    assert run("index", "sync", str(wiki), "--config", config).exit_code == 0
    assert run("index", "remove", str(wiki), "--config", config).exit_code == 0
    alone = wiki / "sales" / "faq.md"
    assert run("index", "sync", str(alone), "--config", config).exit_code == 0
    assert _listed(config) == ["faq.md"]
