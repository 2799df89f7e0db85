"""CSV files that are safe to open in a spreadsheet.

A cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is read by Excel,
LibreOffice and Google Sheets as a formula (``=HYPERLINK(...)``, ``=cmd|' /C calc'!A0``), so such
a cell gets a leading apostrophe, OWASP's CSV-injection rule: the spreadsheet then shows it as
text. Every CSV the project writes goes through :func:`write_csv` (defusedcsv, the library for
this, leaves cells that start with a tab or carriage return alone).
"""

from __future__ import annotations

import csv
from typing import Iterable, Sequence, TextIO

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: object) -> str:
    """``value`` as text, with an apostrophe first where a spreadsheet would run it."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def write_csv(handle: TextIO, header: Sequence[str], rows: Iterable[Sequence[object]]) -> int:
    """Write ``header`` and ``rows`` (every cell made safe) to ``handle``, a text file opened
    with ``newline=""``; return the row count."""
    count = 0
    writer = csv.writer(handle)
    writer.writerow([safe_cell(cell) for cell in header])
    for row in rows:
        writer.writerow([safe_cell(cell) for cell in row])
        count += 1
    return count
