"""Files and folders to :class:`Document`s: one small function per format.

A file that can't be read raises :class:`LoadError` with a reason a user can act on; the sync
collects those per file and goes on with the rest. Formats: .txt .md .html .htm .pdf .docx
.csv .jsonl (one document per row, text in a configurable field).

    chatbot index sync docs/
"""

from __future__ import annotations

import csv
import errno
import fnmatch
import io
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from index.errors import LoadError
from index.csvfile import UNCLOSED_QUOTE, header_separator, unclosed_quote_line
from index.decoding import decode
from index.jsonfile import LINE_END, jsonl_lines
from index.text import shown
from index.types import Document

SUPPORTED = (".txt", ".md", ".markdown", ".html", ".htm", ".pdf", ".docx", ".csv", ".jsonl")


@dataclass(frozen=True)
class LoadFailure:
    """A file left out of the index, and why."""

    source: str
    reason: str
    folder: bool = False
    """A folder that could not be read: what was indexed from inside it is kept."""


# ----------------------------------------------------------------------------- discovery

NOT_A_FILE = "not a regular file (a named pipe, socket or device); reading it could wait forever"


def discover(paths: list[Path], include: list[str], exclude: list[str]
             ) -> tuple[list[Path], list[LoadFailure]]:
    """Every file to index under ``paths`` (absolute, sorted), and the paths that can't be.

    Folders are walked recursively, into linked folders too, and filtered by the include and
    exclude globs (relative to the folder, either case: ``*.pdf`` takes ``REPORT.PDF``); a file
    named explicitly only needs a supported extension. A file reached by several paths (a link
    beside its target) is indexed once, by its path without links where there is one.
    """
    found: set[Path] = set()
    failures: list[LoadFailure] = []
    for path in paths:
        path = Path(os.path.abspath(path))
        if _name_failure(path, failures):
            continue
        if path.is_symlink() and not path.exists():
            failures.append(broken_link(path))
        elif path.is_dir():
            _walk(path, include, exclude, found, failures)
        elif path.exists():
            if not path.is_file():
                failures.append(LoadFailure(str(path), NOT_A_FILE))
            elif path.suffix.lower() in SUPPORTED:
                found.add(path)
            else:
                failures.append(LoadFailure(str(path), _unsupported(path)))
        else:
            failures.append(LoadFailure(str(path), "no such file or folder"))
    return _once_each(found), list(dict.fromkeys(failures))  # a path named twice: said once


def broken_link(path: Path) -> LoadFailure:
    """A symbolic link whose target is gone, or that leads back to itself, as reported: what
    was indexed from it is kept."""
    target = os.readlink(path)
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # its target is there: "broken" sent the user looking
            return LoadFailure(str(path),
                               f"symlink loop: {shown(target)} leads back to this link")
    return LoadFailure(str(path),
                       f"broken symlink to {shown(target)}: point it at a file, or delete it")


def _walk(root: Path, include: list[str], exclude: list[str], found: set[Path],
          failures: list[LoadFailure]) -> None:
    walked = set()  # real folders already walked: a link back up the tree is no loop

    def unreadable(error: OSError) -> None:  # its indexed files are kept (index/sync.py)
        failures.append(LoadFailure(str(error.filename),
                                    f"unreadable folder: {error.strerror or error}", folder=True))

    for folder, dirs, files in os.walk(root, followlinks=True, onerror=unreadable):
        real = os.path.realpath(folder)
        if real in walked and real != os.path.abspath(folder):
            dirs.clear()  # reached through a link again (or a loop); a real folder is walked
            continue      # even when a link to it came first, so its files keep their own path
        walked.add(real)
        if _name_failure(Path(folder), failures):
            dirs.clear()  # said once, for the folder: its files' own names may be fine
            continue
        dirs.sort()
        for name in files:
            path = Path(folder) / name
            relative = path.relative_to(root).as_posix()
            if not _matches(relative, include) or _matches(relative, exclude):
                continue
            if _name_failure(path, failures):
                continue
            if path.is_symlink() and not path.exists():
                failures.append(broken_link(path))
            elif not path.is_file():
                failures.append(LoadFailure(str(path), NOT_A_FILE))
            elif path.suffix.lower() in SUPPORTED:
                found.add(path)


def _name_failure(path: Path, failures: list[LoadFailure]) -> bool:
    """A name that is not valid UTF-8 (an old archive's Latin-1 name) can't be stored or shown:
    that file or folder is reported, the others are indexed."""
    try:
        str(path).encode("utf-8")
        return False
    except UnicodeEncodeError:
        shown = os.fsencode(path).decode("utf-8", "replace")
        kind = "folder" if path.is_dir() else "file"
        failures.append(LoadFailure(shown, f"the {kind} name is not valid UTF-8; rename the "
                                           f"{kind}"))
        return True


def _once_each(paths: set[Path]) -> list[Path]:
    """``paths`` (sorted) less the second path to one file, keeping the one without links."""
    real = {path: os.path.realpath(path) for path in paths}  # one lookup of links per file
    by_file: dict[str, Path] = {}
    for path in sorted(paths, key=lambda p: (real[p] != str(p), str(p))):
        by_file.setdefault(real[path], path)
    return sorted(by_file.values())


def _matches(relative: str, patterns: list[str]) -> bool:
    # fnmatch's "*" crosses "/", so "**/x" only needs its "**/" dropped to match at the top too.
    relative = relative.lower()
    return any(fnmatch.fnmatchcase(relative, p) or
               (p.startswith("**/") and fnmatch.fnmatchcase(relative, p[3:]))
               for p in (pattern.lower() for pattern in patterns))


def _unsupported(path: Path) -> str:
    advice = _SAVE_AS.get(path.suffix.lower(), "")
    return (f"unsupported format {path.suffix or '(no extension)'}; supported: "
            f"{', '.join(SUPPORTED)}{advice and '; ' + advice}")


_SAVE_AS = {**dict.fromkeys((".doc", ".odt", ".rtf", ".pages"), "save it as .docx"),
            **dict.fromkeys((".xlsx", ".xls", ".ods", ".numbers"), "save the sheet as .csv"),
            ".json": "save it as .jsonl, one JSON object a line",
            "": "if it is text, name it .txt"}
"""A format a user can save a file of as a supported one, and how."""


# ----------------------------------------------------------------------------- reading

def read_bytes(path: Path, max_bytes: int) -> bytes:
    """The file's bytes, or :class:`LoadError` if it is too large, unreadable or empty;
    :class:`FileNotFoundError` if it is gone (the sync counts it as removed)."""
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise LoadError(f"over the size limit ({size / 2**20:.1f} MB > "
                            f"{max_bytes / 2**20:.1f} MB; raise index.max_file_mb to include it)")
        data = path.read_bytes()
    except (LoadError, FileNotFoundError):
        raise
    except OSError as exc:
        raise LoadError(f"unreadable: {exc.strerror or exc}") from exc
    if not data.strip():
        raise LoadError("empty file: write its text, or delete it")
    return data


def load_file(path: Path, data: bytes, text_field: str = "text") -> list[Document]:
    """The documents in one file's ``data``; raises :class:`LoadError` with the reason."""
    loader = LOADERS.get(path.suffix.lower())
    if loader is None:
        raise LoadError(_unsupported(path))
    source = str(path)
    if path.suffix.lower() in (".csv", ".jsonl"):
        docs = loader(source, data, text_field)
    else:
        docs = loader(source, data)
    if not any(doc.text.strip() for doc in docs):
        raise LoadError(_NO_TEXT.get(path.suffix.lower(), "no text found: write its text, or "
                                     "delete it").format(text_field=text_field))
    return [doc for doc in docs if doc.text.strip()]


_TABLE_WITHOUT_TEXT = ("no text found: the '{text_field}' field is empty in every row; fill it "
                       "in, or set index.text_field to the field that holds the text")
_PAGE_WITHOUT_TEXT = "no text found outside its scripts, menus, headers, footers and forms"
_NO_TEXT = {".pdf": "no text found (a scanned PDF? run OCR on it first)",
            ".csv": _TABLE_WITHOUT_TEXT, ".jsonl": _TABLE_WITHOUT_TEXT,
            ".html": _PAGE_WITHOUT_TEXT, ".htm": _PAGE_WITHOUT_TEXT}
"""Why a file of each format read as no text, and what to do; a ``.docx`` says the default."""


def load_text(source: str, data: bytes) -> list[Document]:
    return [Document(source, decode(data), {"format": "text"})]


def load_markdown(source: str, data: bytes) -> list[Document]:
    return [Document(source, decode(data), {"format": "markdown"})]


_DROP = ["script", "style", "nav", "header", "footer", "aside", "noscript", "form", "template"]
_BLOCKS = ["p", "li", "tr", "div", "pre", "blockquote", "dd", "dt", "section", "article",
           "table", "ul", "ol", "br", "figcaption"]


def load_html(source: str, data: bytes) -> list[Document]:
    """Main text as Markdown: headings become ``#`` lines so the chunker keeps their path."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(decode(data), "html.parser")
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    root = soup.find("main") or soup.find("article") or soup.body or soup
    for tag in root.find_all(_DROP):
        tag.decompose()
    for heading in root.find_all(re.compile(r"^h[1-6]$")):
        level = int(heading.name[1])
        heading.replace_with(f"\n\n{'#' * level} {heading.get_text(' ', strip=True)}\n\n")
    for block in root.find_all(_BLOCKS):
        block.insert_before("\n")
        block.insert_after("\n")
    lines = (re.sub(r"[ \t\r\f\v]+", " ", line).strip() for line in root.get_text().split("\n"))
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    return [Document(source, text, {"format": "markdown", "title": title})]


def load_pdf(source: str, data: bytes) -> list[Document]:
    """Text per page; ``metadata["pages"]`` holds (offset, page number) for each page."""
    import pypdf

    # pypdf's warnings ("EOF marker not found") went to stderr beside the sync's own report,
    # which names the file and the reason where it matters: the file could not be read
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise LoadError("encrypted PDF (needs a password); save a decrypted copy")
        pages, parts, offset = [], [], 0
        for number, page in enumerate(reader.pages, start=1):
            text = (page.extract_text() or "").strip()
            if text:
                pages.append((offset, number))
                parts.append(text)
                offset += len(text) + 2
    except LoadError:
        raise
    except pypdf.errors.DependencyError as exc:
        # AES, Acrobat's encryption since 2005 (a file that only forbids copying or printing
        # and opens in any viewer included), takes the cryptography package; without it such a
        # file was reported as a "corrupt PDF".
        if "AES" in str(exc):
            raise LoadError("encrypted PDF (AES), which takes the cryptography package to read: "
                            "pip install cryptography, or save a decrypted copy") from exc
        raise LoadError(f"this PDF takes a package that is not installed: {exc}") from exc
    except Exception as exc:  # pypdf raises many types on broken files
        raise LoadError(f"corrupt PDF: {exc}; open it and save or export it again as PDF") from exc
    return [Document(source, "\n\n".join(parts), {"format": "pdf", "pages": pages})]


OLE_SIGNATURE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
"""How a Compound File begins: Word's .doc, and the wrapper Office puts round an encrypted
.docx, which is otherwise a zip file."""


def load_docx(source: str, data: bytes) -> list[Document]:
    """Paragraphs and tables; Heading styles become ``#`` lines so the heading path is kept."""
    import docx

    if data.startswith(OLE_SIGNATURE):
        raise LoadError("a password-protected .docx (or an old Word .doc named .docx), which "
                        "can't be read: save a copy without a password, as .docx")
    try:
        document = docx.Document(io.BytesIO(data))
    except Exception as exc:  # python-docx raises zip, XML and key errors on broken files
        raise LoadError(f"not a valid .docx: {exc}; open it and save it again as .docx") from exc
    lines = []
    for paragraph in document.paragraphs:
        text = paragraph.text.strip()
        style = paragraph.style.name if paragraph.style is not None else ""
        match = re.match(r"Heading (\d)", style)
        if text and (match or style == "Title"):
            lines.append(f"\n{'#' * (int(match.group(1)) if match else 1)} {text}\n")
        elif text:
            lines.append(text + "\n")
    for table in document.tables:
        for row in table.rows:
            lines.append(" | ".join(cell.text.strip() for cell in row.cells))
    return [Document(source, "\n".join(lines).strip(), {"format": "markdown"})]


def load_csv(source: str, data: bytes, text_field: str) -> list[Document]:
    """One document per row. Any line ending reads (old Macs end lines with a lone CR), and a
    cell may be as long as the file (the size limit is ``index.max_file_mb``'s)."""
    csv.field_size_limit(max(csv.field_size_limit(), len(data)))
    text = LINE_END.sub("\n", decode(data))
    separator = header_separator(text)  # as `chatbot data build` reads a CSV
    if (line := unclosed_quote_line(text, separator)) is not None:
        raise LoadError(f"line {line}: {UNCLOSED_QUOTE}")
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=separator,
                            skipinitialspace=True)
    # a header a person typed: "Id, Text" names the text_field "text"
    reader.fieldnames = [text_field if name.strip().casefold() == text_field.casefold()
                         else name for name in reader.fieldnames or []]
    if text_field not in reader.fieldnames:
        raise LoadError(f"no column {text_field!r} (columns: {', '.join(reader.fieldnames or [])}); "
                        "set index.text_field")
    return [_row(source, number, row, text_field) for number, row in enumerate(reader, start=1)]


MAX_NAMED_LINES = 5


def load_jsonl(source: str, data: bytes, text_field: str) -> list[Document]:
    """One document per row. Every bad line is named at once, so one pass fixes them all; the
    file is indexed whole or not at all (what was indexed of it before stays)."""
    docs, bad = [], []
    for number, line in enumerate(jsonl_lines(decode(data)), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            bad.append(f"line {number}: not valid JSON ({exc.msg})")
            continue
        if not isinstance(row, dict) or text_field not in row:
            bad.append(f"line {number}: no {text_field!r} field")
            continue
        if not isinstance(row[text_field], (str, type(None))):  # else indexed as Python's repr
            bad.append(f"line {number}: {text_field!r} is not a string")
            continue
        docs.append(_row(source, number, row, text_field))
    if bad:
        more = f"; and {len(bad) - MAX_NAMED_LINES} more" if len(bad) > MAX_NAMED_LINES else ""
        hint = "; set index.text_field" if any("field" in line for line in bad) else ""
        raise LoadError(f"{len(bad)} bad of {len(bad) + len(docs)} lines: "
                        f"{'; '.join(bad[:MAX_NAMED_LINES])}{more}{hint}")
    return docs


def _row(source: str, number: int, row: dict, text_field: str) -> Document:
    fields = {k: v for k, v in row.items() if k != text_field and isinstance(v, (str, int, float))}
    return Document(source, str(row[text_field] or ""),
                    {"format": "text", "row": number, "fields": fields})


LOADERS: dict[str, Callable[..., list[Document]]] = {
    ".txt": load_text, ".md": load_markdown, ".markdown": load_markdown, ".html": load_html,
    ".htm": load_html, ".pdf": load_pdf, ".docx": load_docx, ".csv": load_csv,
    ".jsonl": load_jsonl,
}
