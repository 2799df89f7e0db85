"""Text as a tokenizer and SQLite take it, shared by every layer that receives text from
people: chat messages, API requests, log notes, search queries and question files."""

from __future__ import annotations

import os
import unicodedata


def clean_text(text: str) -> str:
    """``text`` without control characters (newlines and tabs stay) and lone surrogates: the
    tokenizer can't encode a surrogate and the log can't store one."""
    return "".join(ch for ch in text
                   if ch in "\n\t" or unicodedata.category(ch) not in ("Cc", "Cs"))


def shown(name: str | os.PathLike) -> str:
    """A file's name or path as a line of output shows it: as it is, or, where it holds a line
    end, a tab, a terminal escape or another character that prints as nothing, as Python
    writes it (quoted, ``\\n``, ``\\x1b``), so that a name can neither split its line nor
    forge another, and each stays one a reader can take apart.

    >>> shown("docs/a.md"), shown("two\\nlines.md")
    ('docs/a.md', "'two\\\\nlines.md'")
    """
    text = str(name)
    return text if text.isprintable() else repr(text)


def counted(number: int, noun: str) -> str:
    """A count with its noun as a person writes it, not ``1 problem(s)``.

    >>> counted(1, "problem"), counted(12, "bad line")
    ('1 problem', '12 bad lines')
    """
    return f"{number} {noun}" + ("" if number == 1 else "s")
