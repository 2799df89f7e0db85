"""Text files in any common encoding read as text, and binary data behind a text extension
refused by name (index/decoding.py), through the loaders and the sync."""

from __future__ import annotations

from pathlib import Path

import pytest
from index_helpers import CountingEmbedder

from index.errors import LoadError
from index.load import load_file
from index.manifest import IndexSettings
from index.store import Store
from index.sync import sync


def load(path: Path, text_field: str = "text"):
    return load_file(path, path.read_bytes(), text_field)


def synced_beside_a_good_file(folder: Path, files: dict[str, bytes]):
    """The report of a sync of ``folder`` holding ``files`` and one good Markdown file, into
    a new index beside it."""
    folder.mkdir()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    (folder / "good.md").write_text("# Good\n\nThis one is fine.")
    store = Store.open(folder.parent / "index", IndexSettings("hash:64", None, 64, 8),
                       create=True)
    return sync([folder], store, CountingEmbedder())


def test_txt_utf8_and_legacy_encodings(tmp_path):
    (tmp_path / "u.txt").write_text("naïve café", encoding="utf-8")
    (tmp_path / "l.txt").write_bytes("Grüße aus Köln, schöne Straße, Äpfel und Öl.".encode("cp1252"))
    (tmp_path / "w.txt").write_text("wide text", encoding="utf-16")
    for order in ("le", "be"):  # a UTF-32 mark begins as UTF-16's does: NULs were read
        (tmp_path / f"w32{order}.txt").write_bytes(
            f"\ufeffwider text, café {order}".encode(f"utf-32-{order}"))
    assert load(tmp_path / "u.txt")[0].text == "naïve café"
    assert load(tmp_path / "l.txt")[0].text == "Grüße aus Köln, schöne Straße, Äpfel und Öl."
    assert load(tmp_path / "w.txt")[0].text == "wide text"
    assert [load(tmp_path / f"w32{order}.txt")[0].text for order in ("le", "be")] == [
        "wider text, café le", "wider text, café be"]


def test_utf16_without_a_byte_order_mark_is_read_as_text(tmp_path):
    """Some Windows tools write UTF-16 with no mark: every other byte a NUL, it was refused as
    binary. A binary file with NULs in both places stays refused."""
    for order in ("le", "be"):
        (tmp_path / f"w{order}.txt").write_bytes("Wide text, café.\nSecond line.".encode(
            f"utf-16-{order}"))
    assert [load(tmp_path / f"w{order}.txt")[0].text for order in ("le", "be")] == [
        "Wide text, café.\nSecond line."] * 2
    (tmp_path / "b.txt").write_bytes(bytes(range(256)) * 4)
    with pytest.raises(LoadError, match="^binary file, not text: a NUL byte at byte 0"):
        load(tmp_path / "b.txt")


def test_a_short_western_european_text_is_read_as_cp1252(tmp_path):
    (tmp_path / "menu.txt").write_bytes("Café crème brûlée, naïve, très bien.".encode("cp1252"))
    assert load(tmp_path / "menu.txt")[0].text == "Café crème brûlée, naïve, très bien."
    (tmp_path / "ru.txt").write_bytes("Привет, как дела? Это текст.".encode("cp1251"))
    assert load(tmp_path / "ru.txt")[0].text == "Привет, как дела? Это текст."


def test_a_byte_order_mark_the_text_does_not_match_is_no_traceback(tmp_path):
    """A UTF-16 file cut short by a byte, or a UTF-8 mark over Windows-1252 text, raised
    UnicodeDecodeError out of the sync: one such file stopped every other from being indexed."""
    import codecs

    folder = tmp_path / "docs"
    report = synced_beside_a_good_file(folder, {
        "cut.txt": codecs.BOM_UTF16_LE + "wide text".encode("utf-16-le") + b"!",
        "mixed.txt": codecs.BOM_UTF8 + "Crème brûlée, très bien.".encode("cp1252")})
    assert [(f.source, f.reason) for f in report.failed] == [
        (str(folder / "cut.txt"), "starts with a UTF-16 byte-order mark but is not valid UTF-16 "
                                  "(byte 20: truncated data); save it again as UTF-8")]
    assert report.added == [str(folder / "good.md"), str(folder / "mixed.txt")]
    assert load(folder / "mixed.txt")[0].text == "Crème brûlée, très bien."


def test_a_nul_byte_past_the_first_8_kb_is_binary_too(tmp_path):
    """Only the first 8 KB were looked at: a text header over binary data (or NUL padding a
    crash left in a log) was indexed as text, NULs and all. Where a NUL falls doesn't change
    what the file is; the sync names the file and where, and indexes the rest."""
    folder = tmp_path / "docs"
    report = synced_beside_a_good_file(folder, {
        "late.txt": b"plain words " * 1000 + b"\x00\x01\x02 more"})
    assert [(f.source, f.reason) for f in report.failed] == [
        (str(folder / "late.txt"), "binary file, not text: a NUL byte at byte 12000 (check its "
                                   "extension)")]
    assert report.added == [str(folder / "good.md")]
