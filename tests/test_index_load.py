"""Each loader, and every bad input reported by name with its reason while the rest syncs."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from index_helpers import (CountingEmbedder, make_aes_encrypted_pdf, make_docx, make_encrypted_pdf,
                           make_pdf)

from index.errors import LoadError
from index.load import NOT_A_FILE, discover, load_file, read_bytes
from index.manifest import IndexSettings
from index.store import Store
from index.sync import sync


def load(path: Path, text_field: str = "text"):
    return load_file(path, path.read_bytes(), text_field)


def test_markdown_kept_as_markdown(tmp_path):
    (tmp_path / "a.md").write_text("# Title\n\ntext", encoding="utf-8")
    doc = load(tmp_path / "a.md")[0]
    assert doc.text == "# Title\n\ntext" and doc.metadata["format"] == "markdown"


def test_html_main_text_with_headings_without_markup(tmp_path):
    (tmp_path / "p.html").write_text(
        "<html><head><title>Guide</title><style>p{color:red}</style></head><body>"
        "<nav>Home | About</nav><main><h1>Visas</h1><p>Apply <b>online</b> today.</p>"
        "<h2>Fees</h2><ul><li>Adult: 100</li><li>Child: 50</li></ul>"
        "<script>track()</script></main><footer>(c) 2024</footer></body></html>")
    doc = load(tmp_path / "p.html")[0]
    assert doc.text.splitlines()[0] == "# Visas"
    assert "Apply online today." in doc.text and "## Fees" in doc.text
    assert "Adult: 100" in doc.text
    for noise in ("Home | About", "track()", "color:red", "(c) 2024", "<"):
        assert noise not in doc.text
    assert doc.metadata["title"] == "Guide"


def test_pdf_text_with_page_numbers(tmp_path):
    doc = load(make_pdf(tmp_path / "m.pdf", ["Page one words", "Page two words"]))[0]
    assert doc.text == "Page one words\n\nPage two words"
    assert [number for _, number in doc.metadata["pages"]] == [1, 2]


def test_docx_headings_paragraphs_and_tables(tmp_path):
    doc = load(make_docx(tmp_path / "h.docx"))[0]
    assert "# Handbook" in doc.text and "## Holidays" in doc.text
    assert "twenty five days" in doc.text and "Office | Berlin" in doc.text


def test_include_globs_match_either_case(tmp_path):
    for name in ("NOTES.TXT", "Report.PDF", "a.md"):
        (tmp_path / name).write_text("x")
    files, _ = discover([tmp_path], ["**/*.txt", "**/*.pdf", "**/*.md"], ["**/report.*"])
    assert [p.name for p in files] == ["NOTES.TXT", "a.md"]


def test_a_file_reached_through_links_is_found_once_and_linked_folders_are_walked(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "readme.md").write_text("x")
    (tmp_path / "link.md").symlink_to(tmp_path / "a" / "readme.md")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "guide.md").write_text("y")
    (tmp_path / "a" / "guides").symlink_to(tmp_path / "elsewhere")
    (tmp_path / "a" / "loop").symlink_to(tmp_path / "a")  # a link back up ends the walk there
    files, failures = discover([tmp_path / "a", tmp_path / "link.md"], ["**/*"], [])
    assert [p.relative_to(tmp_path).as_posix() for p in files] == ["a/guides/guide.md",
                                                                   "a/readme.md"]
    assert failures == []


@pytest.mark.parametrize("link", ["a_link", "z_link"])
def test_a_linked_folder_beside_its_target_is_indexed_by_the_path_without_links(tmp_path, link):
    """Whichever of the link and its target the walk meets first."""
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "inner.md").write_text("Walrus gateway text.")
    (tmp_path / link).symlink_to("sub")
    files, _ = discover([tmp_path], ["**/*.md"], [])
    assert files == [tmp_path / "sub" / "inner.md"]


def test_a_file_name_that_is_not_utf8_is_reported_and_the_rest_indexed(tmp_path):
    folder = os.fsencode(tmp_path / "docs")
    os.mkdir(folder)
    with open(os.path.join(folder, b"caf\xe9.txt"), "wb") as handle:
        handle.write(b"latin name")
    (tmp_path / "docs" / "ok.md").write_text("fine")
    files, failures = discover([tmp_path / "docs"], ["**/*"], [])
    assert [p.name for p in files] == ["ok.md"]
    assert [(Path(f.source).name, f.reason) for f in failures] == [
        ("caf\ufffd.txt", "the file name is not valid UTF-8; rename the file")]


def test_a_folder_name_that_is_not_utf8_is_reported_once_as_the_folder(tmp_path):
    """Each file inside was reported, saying to rename that file, whose own name was fine."""
    folder = os.path.join(os.fsencode(tmp_path / "docs"), b"r\xe9sum\xe9s")
    os.makedirs(folder)
    for name in (b"one.md", b"two.md"):
        with open(os.path.join(folder, name), "wb") as handle:
            handle.write(b"text")
    (tmp_path / "docs" / "ok.md").write_text("fine")
    files, failures = discover([tmp_path / "docs"], ["**/*"], [])
    assert [p.name for p in files] == ["ok.md"]
    assert [(Path(f.source).name, f.reason) for f in failures] == [
        ("r\ufffdsum\ufffds", "the folder name is not valid UTF-8; rename the folder")]


def test_discover_applies_include_and_exclude(tmp_path):
    for name in ("a.md", "sub/b.txt", "sub/c.pdf", ".git/d.md", "e.xyz"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    files, failures = discover([tmp_path], ["**/*.md", "**/*.txt"], ["**/.git/**"])
    assert [p.relative_to(tmp_path).as_posix() for p in files] == ["a.md", "sub/b.txt"]
    assert failures == []


def test_by_default_hidden_files_and_folders_are_skipped_unless_named(tmp_path):
    """A project folder's .venv, .cache or .github hold documents nobody asked to index, and
    Word's lock file beside a document that is open (``~$port.docx``) is no document: it
    failed every sync while the document was open."""
    from chatbot.config_retrieval import IndexConfig

    for name in ("a.md", "sub/b.md", ".venv/lib/site/README.md", "sub/.draft.md",
                 ".github/ISSUE.md", "node_modules/pkg/readme.md", ".notes/plan.md",
                 "~$port.docx", "sub/~$Notes.DOCX"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    defaults = IndexConfig()
    files, failures = discover([tmp_path], defaults.include, defaults.exclude)
    assert [p.relative_to(tmp_path).as_posix() for p in files] == ["a.md", "sub/b.md"]
    named, _ = discover([tmp_path / ".notes", tmp_path / "sub" / ".draft.md"],
                        defaults.include, defaults.exclude)
    assert [p.relative_to(tmp_path).as_posix() for p in named] == [".notes/plan.md",
                                                                   "sub/.draft.md"]
    assert failures == []


def test_a_named_pipe_is_reported_not_read(tmp_path):
    """Reading a pipe waits for a writer: the sync would hang."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("x")
    os.mkfifo(tmp_path / "docs" / "pipe.md")
    os.mkfifo(tmp_path / "named.txt")
    files, failures = discover([tmp_path / "docs", tmp_path / "named.txt"], ["**/*.md"], [])
    assert files == [tmp_path / "docs" / "a.md"]
    assert [(Path(f.source).name, f.reason) for f in failures] == [
        ("pipe.md", NOT_A_FILE), ("named.txt", NOT_A_FILE)]


def _unreadable(path: Path) -> None:
    if os.geteuid() == 0:  # root reads any mode; /proc/self/mem fails to read at offset 0
        path.symlink_to("/proc/self/mem")
    else:
        path.write_text("secret")
        path.chmod(0)


def _bad_inputs(folder: Path) -> dict[str, str]:
    """File name -> the reason the sync must give for it."""
    (folder / "empty.txt").write_text("  \n")
    (folder / "binary.txt").write_bytes(bytes(range(256)) * 4)
    (folder / "corrupt.pdf").write_bytes(b"%PDF-1.4\nthis is not really a pdf")
    make_encrypted_pdf(folder / "locked.pdf", make_pdf(folder.parent / "plain.pdf", ["secret"]))
    (folder / "huge.txt").write_text("word " * 300_000)
    _unreadable(folder / "unreadable.txt")
    (folder / "dangling.md").symlink_to(folder / "gone.md")
    (folder / "loop-a.md").symlink_to("loop-b.md")  # each leads to the other
    (folder / "loop-b.md").symlink_to("loop-a.md")
    return {"empty.txt": "empty file",
            "binary.txt": "binary file, not text",
            "corrupt.pdf": "corrupt PDF",
            "locked.pdf": "encrypted PDF (needs a password)",
            "huge.txt": "over the size limit (1.4 MB > 1.0 MB; raise index.max_file_mb",
            "unreadable.txt": "unreadable: ",
            "dangling.md": f"broken symlink to {folder / 'gone.md'}",
            "loop-a.md": "symlink loop: loop-b.md leads back to this link",
            "loop-b.md": "symlink loop: loop-a.md leads back to this link"}


def test_every_bad_input_is_reported_by_name_and_the_rest_is_indexed(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    expected = _bad_inputs(folder)
    (folder / "good.md").write_text("# Good\n\nThis one is fine.")
    store = Store.open(tmp_path / "index", IndexSettings("hash:64", None, 64, 8), create=True)
    report = sync([folder], store, CountingEmbedder(), max_file_bytes=2**20)
    reasons = {Path(f.source).name: f.reason for f in report.failed}
    assert sorted(reasons) == sorted(expected)
    for name, reason in expected.items():
        assert reasons[name].startswith(reason), (name, reasons[name])
    assert report.added == [str(folder / "good.md")] and not report.ok


def test_a_file_that_turns_bad_keeps_what_was_indexed(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    make_pdf(folder / "manual.pdf", ["The pump needs oil every week."])
    store = Store.open(tmp_path / "index", IndexSettings("hash:64", None, 64, 8), create=True)
    assert sync([folder], store, CountingEmbedder()).ok
    (folder / "manual.pdf").write_bytes(b"%PDF-1.4 truncated")
    report = sync([folder], store, CountingEmbedder())
    assert [f.reason[:11] for f in report.failed] == ["corrupt PDF"] and report.removed == []
    reopened = Store.open(tmp_path / "index")
    assert [d.source for d in reopened.documents()] == [str(folder / "manual.pdf")]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a folder of any mode")
def test_a_folder_that_cant_be_read_is_reported_and_keeps_what_was_indexed(tmp_path):
    locked = tmp_path / "docs" / "locked"
    locked.mkdir(parents=True)
    (locked / "pump.md").write_text("The pump needs oil every week.")
    (tmp_path / "docs" / "ok.md").write_text("Fine.")
    store = Store.open(tmp_path / "index", IndexSettings("hash:64", None, 64, 8), create=True)
    assert sync([tmp_path / "docs"], store, CountingEmbedder()).ok
    locked.chmod(0)
    try:
        report = sync([tmp_path / "docs"], store, CountingEmbedder())
    finally:
        locked.chmod(0o755)
    assert [(f.source, f.reason) for f in report.failed] == [
        (str(locked), "unreadable folder: Permission denied")]
    assert report.removed == [] and not report.ok
    assert str(locked / "pump.md") in Store.open(tmp_path / "index").hashes


def test_a_path_named_twice_is_reported_once_and_markdown_is_found_in_folders(tmp_path):
    from chatbot.config_retrieval import IndexConfig

    (tmp_path / "notes.markdown").write_text("# Notes\n\nThe vault opens at nine.")
    (tmp_path / "broken.md").symlink_to(tmp_path / "gone.md")
    files, failures = discover([tmp_path, tmp_path / "broken.md", Path(f"{tmp_path}/")],
                               IndexConfig().include, IndexConfig().exclude)
    assert files == [tmp_path / "notes.markdown"]
    assert [(Path(f.source).name, f.reason[:14]) for f in failures] == [("broken.md",
                                                                         "broken symlink")]


def test_size_limit_is_checked_before_reading(tmp_path):
    path = tmp_path / "big.txt"
    path.write_text("x" * 2048)
    with pytest.raises(LoadError, match=r"over the size limit \(0.0 MB > 0.0 MB"):
        read_bytes(path, 1024)


def test_a_broken_pdf_is_reported_once_without_the_readers_own_warnings(tmp_path, caplog):
    """pypdf's warnings reached stderr beside the sync's report, which names the file."""
    folder = tmp_path / "docs"
    folder.mkdir()
    whole = make_pdf(tmp_path / "whole.pdf", ["Policy"]).read_bytes()
    (folder / "cut.pdf").write_bytes(whole[:whole.rfind(b"%%EOF")])
    store = Store.open(tmp_path / "index", IndexSettings("hash:64", None, 64, 8), create=True)
    with caplog.at_level(logging.DEBUG):
        report = sync([folder], store, CountingEmbedder())
    assert [(f.source, f.reason.split(":")[0]) for f in report.failed] == [
        (str(folder / "cut.pdf"), "corrupt PDF")]
    assert [r.getMessage() for r in caplog.records if r.name.startswith("pypdf")] == []


def test_a_password_protected_docx_is_reported_as_such_not_as_a_broken_zip(tmp_path):
    """Office wraps an encrypted .docx in a Compound File (as an old .doc is): it was reported
    as "not a valid .docx: File is not a zip file", which says nothing of what to do."""
    compound_file_header = (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(16)
                            + b"\x3e\x00\x03\x00\xfe\xff\x09\x00")
    (tmp_path / "locked.docx").write_bytes(compound_file_header.ljust(4096, b"\x00"))
    with pytest.raises(LoadError, match=r"^a password-protected \.docx \(or an old Word \.doc "
                                        r"named \.docx\), which can't be read: save a copy "
                                        r"without a password, as \.docx$"):
        load(tmp_path / "locked.docx")


def test_an_aes_encrypted_pdf_is_reported_as_encrypted_not_corrupt(tmp_path):
    """pypdf reads AES only with the cryptography package; without it the file was "corrupt
    PDF: cryptography>=3.1 is required for AES algorithm", though any viewer opens it."""
    import importlib.util

    folder = tmp_path / "docs"
    folder.mkdir()
    make_aes_encrypted_pdf(folder / "policy.pdf", make_pdf(tmp_path / "plain.pdf", ["Policy"]))
    (folder / "good.md").write_text("# Good\n\nThis one is fine.")
    store = Store.open(tmp_path / "index", IndexSettings("hash:64", None, 64, 8), create=True)
    report = sync([folder], store, CountingEmbedder())
    assert [f.source for f in report.failed] == [str(folder / "policy.pdf")]
    reason = report.failed[0].reason
    if importlib.util.find_spec("cryptography") is None:
        assert reason == ("encrypted PDF (AES), which takes the cryptography package to read: "
                          "pip install cryptography, or save a decrypted copy")
    else:  # read, and no password opens it
        assert reason.startswith("encrypted PDF (needs a password)")
    assert report.added == [str(folder / "good.md")]


def test_a_file_that_cant_be_indexed_says_what_to_do(tmp_path):
    """"empty file", "corrupt PDF: Stream has ended unexpectedly", "not a valid .docx: File
    is not a zip file" and "broken symlink to x" named the problem but not the way out."""
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "empty.md").write_text("")
    (folder / "cut.pdf").write_bytes(b"%PDF-1.4 nonsense")
    (folder / "fake.docx").write_bytes(b"not a docx")
    (folder / "dangling.md").symlink_to(folder / "gone.md")
    store = Store.open(tmp_path / "index", IndexSettings("hash:64", None, 64, 8), create=True)
    reasons = {Path(f.source).name: f.reason for f in sync([folder], store, CountingEmbedder())
               .failed}
    assert reasons == {
        "empty.md": "empty file: write its text, or delete it",
        "cut.pdf": "corrupt PDF: Stream has ended unexpectedly; open it and save or export it "
                   "again as PDF",
        "fake.docx": "not a valid .docx: File is not a zip file; open it and save it again as "
                     ".docx",
        "dangling.md": f"broken symlink to {folder / 'gone.md'}: point it at a file, or delete "
                       "it"}


@pytest.mark.parametrize("name, advice", [
    ("minutes.doc", "; save it as .docx"), ("notes.odt", "; save it as .docx"),
    ("budget.xlsx", "; save the sheet as .csv"), ("rows.json", "; save it as .jsonl, one "
                                                   "JSON object a line"),
    ("README", "; if it is text, name it .txt"), ("photo.png", ""),
])
def test_a_format_another_can_be_saved_as_says_which(tmp_path, name, advice):
    """A Word 97 file, a spreadsheet or a JSON export named a format there is no loader for
    and stopped there; a user has each in a format there is one for, a save away."""
    (tmp_path / name).write_bytes(b"data")
    with pytest.raises(LoadError) as failed:
        load(tmp_path / name)
    assert failed.value.reason.startswith("unsupported format ")
    assert failed.value.reason.endswith(", .csv, .jsonl" + advice)
