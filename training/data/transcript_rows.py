"""A transcript file's rows: each JSONL line or CSV row as its record, or ``Malformed`` with
the reason it can't be read, numbered by the line it starts on (see
``training.data.transcripts``, which makes conversations of them).
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from typing import Any, Iterator

from index.csvfile import (SEPARATORS, UNCLOSED_QUOTE, header_separator,
                           unclosed_quote_line)
from index.decoding import decode_wide
from index.errors import LoadError
from index.jsonfile import LINE_END, jsonl_lines
from training.errors import DataError

_NOT_UTF8 = re.compile("[\udc80-\udcff]")
"""What ``surrogateescape`` decoding turns a byte that is not UTF-8 into."""


def transcript_text(data: bytes) -> str:
    """A transcript file's text: UTF-8, or UTF-16/32 with a byte-order mark or UTF-16 without
    one (read as the index reads documents). A byte that is not UTF-8 spoils its line
    (reported there), not the whole file; a binary file is a ``DataError`` worded as the
    index words it."""
    try:
        if (text := decode_wide(data)) is not None:
            return text
    except LoadError as exc:
        raise DataError(exc.reason) from None
    # the byte-order mark spreadsheet programs put first is no part of the text
    return data.decode("utf-8", errors="surrogateescape").removeprefix("\ufeff")


def jsonl_rows(text: str) -> Iterator[tuple[int, Any]]:
    if text.lstrip().startswith("[") and _is_json_array(text):  # each of its lines malformed
        raise DataError("this holds a JSON array of conversations ([{...}, {...}]), not one "
                        "JSON object a line: name it .json")
    for number, line in enumerate(jsonl_lines(text), start=1):
        if not line.strip():
            continue
        if bad := not_utf8(line):
            yield number, bad
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as exc:
            yield number, Malformed(f"malformed JSON ({exc.msg}, column {exc.colno})")
        except RecursionError:  # Python's parser gives up at about 1,000 levels
            yield number, Malformed(TOO_DEEP)


def _is_json_array(text: str) -> bool:
    try:
        return isinstance(json.loads(text), list)
    except (ValueError, RecursionError):
        return False


def json_array_rows(text: str) -> Iterator[tuple[int, Any]]:
    """The elements of a JSON array of conversations (a common export shape), each numbered by
    its index from 0; a file that is not such an array is a ``DataError``."""
    if not text.strip():
        return
    if bad := not_utf8(text):
        raise DataError(bad.reason)
    if not text.lstrip().startswith("["):
        raise DataError("expected a JSON array of conversations ([{...}, {...}]); a file of one "
                        "JSON object a line is JSON Lines: name it .jsonl")
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"malformed JSON ({exc.msg}, line {exc.lineno}, column {exc.colno})"
                        ) from None
    except RecursionError:
        raise DataError(TOO_DEEP) from None
    yield from enumerate(items)


TOO_DEEP = "JSON nested too deeply to read; a conversation needs only a few levels"


EXPORT_CSV_COLUMNS = ("conversation_id", "split", "message", "role", "content")
"""The header of ``chatbot data export --format csv``: a dataset for reviewers' spreadsheets,
one message a row, which is not read back (build from the JSONL export)."""


def csv_rows(text: str, question: str, answer: str, system: str | None = None
             ) -> Iterator[tuple[int, Any]]:
    """The rows of a CSV file of questions and answers, keyed by the header's columns; a column
    named as a field in another case or with spaces around ("Question, Answer") is that field
    (a person types the header), and the spaces after a separator are not a cell's."""
    if not text.strip():  # no header to fault: the file holds no conversation
        return
    # line breaks inside a quoted cell are the cell's own: kept, as "\n" whatever wrote them
    text = LINE_END.sub("\n", text)
    # a cell may be as long as the file (128 KiB by default): the length step drops it, as a
    # long JSONL line, instead of an error ending the read
    csv.field_size_limit(max(csv.field_size_limit(), len(text)))
    separator = header_separator(text)
    unclosed = unclosed_quote_line(text, separator)
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=separator,
                            skipinitialspace=True)
    fields = {name.strip().casefold(): name for name in (question, answer, system) if name}
    header = reader.fieldnames = [fields.get(column.strip().casefold(), column)
                                  for column in reader.fieldnames or []]
    if header and header[0].lstrip().startswith(("{", "[")):
        raise DataError("this holds JSON, not CSV; if it is one JSON object a line, name it "
                        ".jsonl")
    if undecodable := not_utf8(",".join(header)):  # a legacy code page's header
        raise DataError(f"the CSV header is {undecodable.reason}")
    missing = [f for f in (question, answer) if f not in header]
    if missing and tuple(header) == EXPORT_CSV_COLUMNS:
        raise DataError("this is the one-message-a-row CSV of `chatbot data export --format "
                        "csv`, for reading; build from the JSONL export instead: `chatbot data "
                        "export NAME --out FILE.jsonl`, then `--from FILE.jsonl`")
    if missing:
        raise DataError(f"CSV header has no column(s) {', '.join(missing)} (found: "
                        f"{', '.join(header) or 'nothing'}); set data.question_field/"
                        "data.answer_field in the config")
    first_line = reader.line_num + 1  # a row is named by the line it starts on
    for row in reader:
        if first_line == unclosed:  # the rows after it are in its last cell
            yield first_line, Malformed(UNCLOSED_QUOTE)
            return
        if extra := row.pop(None, None):  # DictReader's key for the cells past the header's
            yield first_line, Malformed(f"{len(header) + len(extra)} cells where the header "
                                         f"has {len(header)} columns; put a cell that holds a "
                                         f"{SEPARATORS[separator]} in double quotes")
        else:
            yield first_line, not_utf8(",".join(v for v in row.values()
                                                 if isinstance(v, str))) or row
        first_line = reader.line_num + 1


@dataclass(frozen=True)
class Malformed:
    reason: str


def not_utf8(text: str) -> Malformed | None:
    """Why ``text`` can't be imported, when a byte of it was not UTF-8."""
    if found := _NOT_UTF8.search(text):
        byte = ord(found.group()) - 0xDC00
        return Malformed(f"not UTF-8 text (byte 0x{byte:02x}); re-save the file as UTF-8")
    return None
