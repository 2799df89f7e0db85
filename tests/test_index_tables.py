"""The table loaders (CSV and JSONL, one document a row) and files that hold no text."""

from __future__ import annotations

import json

import pytest

from index.errors import LoadError
from test_index_load import load


def test_csv_one_document_per_row_with_configurable_field(tmp_path):
    (tmp_path / "faq.csv").write_text("id,answer\n1,Reset it in settings.\n2,Call support.\n")
    docs = load(tmp_path / "faq.csv", text_field="answer")
    assert [d.text for d in docs] == ["Reset it in settings.", "Call support."]
    assert [d.metadata["row"] for d in docs] == [1, 2]
    assert docs[0].metadata["fields"] == {"id": "1"}
    with pytest.raises(LoadError,
                       match=r"no column 'text' \(columns: id, answer\); set index.text_field"):
        load(tmp_path / "faq.csv")


@pytest.mark.parametrize("separator", [";", "\t"])
def test_a_csv_of_semicolons_or_tabs_is_read_as_the_data_commands_read_it(tmp_path, separator):
    """A spreadsheet where a comma is the decimal mark saves ';' between cells: the index read
    one column, "no column 'text' (columns: id;text)", where `chatbot data build` reads it."""
    (tmp_path / "faq.csv").write_text(f"id{separator}text\n1{separator}It costs 2,50 EUR.\n")
    assert [d.text for d in load(tmp_path / "faq.csv")] == ["It costs 2,50 EUR."]


def test_a_csv_header_typed_in_another_case_or_with_spaces_names_the_text_column(tmp_path):
    """"Id, Text" failed with "no column 'text' (columns: Id,  Text)", where `chatbot data
    build` reads "Question, Answer" as its question and answer columns."""
    (tmp_path / "faq.csv").write_text("Id, Text\n1, It costs 3 EUR.\n")
    [doc] = load(tmp_path / "faq.csv")
    assert (doc.text, doc.metadata["fields"]) == ("It costs 3 EUR.", {"Id": "1"})


@pytest.mark.parametrize("name, content, reason", [
    ("faq.csv", "id,text\n1,\n2, \n", "no text found: the 'text' field is empty in every row; "
     "fill it in, or set index.text_field to the field that holds the text"),
    ("faq.jsonl", '{"text": ""}\n', "no text found: the 'text' field is empty in every row; "
     "fill it in, or set index.text_field to the field that holds the text"),
    ("menu.html", "<html><body><nav>Home</nav><script>go()</script></body></html>",
     "no text found outside its scripts, menus, headers, footers and forms"),
])
def test_a_file_without_text_says_where_the_text_should_be(tmp_path, name, content, reason):
    """A table whose text column is empty, or a page that is all menu, failed with a bare "no
    text found", where an empty file says what to do."""
    (tmp_path / name).write_text(content)
    with pytest.raises(LoadError) as failed:
        load(tmp_path / name)
    assert failed.value.reason == reason


def test_jsonl_one_document_per_row(tmp_path):
    (tmp_path / "rows.jsonl").write_text('{"body": "first"}\n\n{"body": "second", "tag": "x"}\n')
    docs = load(tmp_path / "rows.jsonl", text_field="body")
    assert [(d.text, d.metadata["row"]) for d in docs] == [("first", 1), ("second", 3)]
    (tmp_path / "bad.jsonl").write_text('{"body": "ok"}\n{oops\n{"text": "x"}\n{"body": "ok"}\n')
    with pytest.raises(LoadError, match=r"^2 bad of 4 lines: line 2: not valid JSON \(.*\); "
                                        r"line 3: no 'body' field; set index.text_field$"):
        load(tmp_path / "bad.jsonl", text_field="body")


def test_a_jsonl_row_with_a_unicode_line_separator_is_one_row(tmp_path):
    """json.dumps(ensure_ascii=False) writes U+2028 and U+0085 as they are, inside a string."""
    text = "Opening hours\u2028Monday to Friday\x85 9 to 5."
    (tmp_path / "faq.jsonl").write_text(json.dumps({"text": text}, ensure_ascii=False) + "\r\n"
                                        + json.dumps({"text": "Closed on Sunday."}) + "\r",
                                        encoding="utf-8", newline="")
    assert [(d.text, d.metadata["row"]) for d in load(tmp_path / "faq.jsonl")] == [
        (text, 1), ("Closed on Sunday.", 2)]


def test_a_jsonl_text_that_is_not_a_string_is_a_bad_line(tmp_path):
    """A list of paragraphs was indexed as Python's repr, brackets and quotes in the prompt."""
    (tmp_path / "rows.jsonl").write_text('{"text": ["One.", "Two."]}\n{"text": {"a": "b"}}\n'
                                         '{"text": 42}\n{"text": null}\n{"text": "Fine."}\n')
    with pytest.raises(LoadError, match=r"^3 bad of 5 lines: line 1: 'text' is not a string; "
                                        r"line 2: 'text' is not a string; "
                                        r"line 3: 'text' is not a string$"):
        load(tmp_path / "rows.jsonl")


def test_a_csv_quote_never_closed_is_named_instead_of_swallowing_the_rows_after_it(tmp_path):
    """Python's csv module reads the rest of the file into that one cell, without a word."""
    (tmp_path / "faq.csv").write_text('id,text\n1,Reset it.\n2,"Call us on 555\n3,Email us.\n')
    with pytest.raises(LoadError, match=r"^line 3: a double quote opened there is never closed"):
        load(tmp_path / "faq.csv")


def test_csv_of_any_line_ending_and_long_cells_reads(tmp_path):
    (tmp_path / "mac.csv").write_bytes(b"id,text\r1,Mac row.\r2,Second row.\r")
    assert [d.text for d in load(tmp_path / "mac.csv")] == ["Mac row.", "Second row."]
    long_cell = " ".join(["word"] * 40_000)  # past the csv module's default 128 KB field limit
    (tmp_path / "long.csv").write_text(f'id,text\n1,"{long_cell}"\n')
    assert load(tmp_path / "long.csv")[0].text == long_cell
