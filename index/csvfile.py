"""A CSV text's separator, and its one silent failure: a double quote that is never closed.

Python's csv module (non-strict, as both CSV readers use it: spreadsheets write loose quoting)
then reads the rest of the file into that one cell, without a word, and the rows after it are
gone. It lives in ``index/``, the lowest layer, so the transcript import can share it.
"""

from __future__ import annotations

import csv
import io

UNCLOSED_QUOTE = ("a double quote opened there is never closed, so the rest of the file read "
                  'as one cell; close it, and write a quote inside a quoted cell twice ("")')


def unclosed_quote_line(text: str, delimiter: str = ",") -> int | None:
    """The line the row with the unclosed quote starts on, or None. ``text`` as the reader
    reads it (its line ends already what they will be)."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    start = 1
    while True:
        try:
            next(reader)
        except StopIteration:
            return None
        except csv.Error as exc:  # strict also refuses '"a"b', which the readers accept
            if str(exc) == "unexpected end of data":
                return start
        start = reader.line_num + 1


SEPARATORS = {",": "comma", ";": "semicolon", "\t": "tab"}


def header_separator(text: str) -> str:
    """The header line's separator: spreadsheets where a comma is the decimal mark save cells
    separated by ';', and some save tabs."""
    header = text.partition("\n")[0]
    return next((s for s in SEPARATORS if s in header), ",")
