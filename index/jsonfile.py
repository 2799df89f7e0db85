"""The JSON files of the artifact records (index, dataset and adapter manifests, eval results),
any file that must be replaced whole (``replacing``), the lines of a JSON Lines text
(``jsonl_lines``) and the fields its reader leaves unread (``UnreadFields``).

Written atomically (write, fsync, rename), so a reader sees the old file or the new one, never
half; read with an error that names the file and what to do. It lives in ``index/``, the lowest
layer, so that every record can share it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from index.text import shown


LINE_END = re.compile(r"\r\n|\r|\n")


def jsonl_lines(text: str) -> list[str]:
    """The lines of a JSON Lines text, as ``str.splitlines`` gives them but split at line ends
    only: ``splitlines`` also splits at U+2028, U+0085 and other separators that
    ``json.dumps(ensure_ascii=False)`` leaves inside a string."""
    lines = LINE_END.split(text)
    if lines[-1] == "":  # the end of the last line, or an empty text
        lines.pop()
    return lines


class UnreadFields:
    """The fields of a JSON Lines file's objects that its reader does not read, each with the
    first line it is on. Extra fields (a ``notes`` column) are normal, so they are warned about,
    not refused: the warning is how a misspelt ``gold_id`` gets noticed instead of ignored."""

    def __init__(self, read: Iterable[str], expected: Iterable[str] = ()) -> None:
        self.read = tuple(read)
        """The fields the reader reads, in the order the warning lists them."""
        self._known = {*self.read, *expected}  # expected: fields of a related format, unread
        self.first_line: dict[str, int] = {}

    def note(self, row: dict, line: int) -> None:
        for name in row:
            if name not in self._known:
                self.first_line.setdefault(name, line)

    def warnings(self, path: str | Path) -> list[str]:
        """One warning per unread field name; ``json.dumps`` shows a name's odd characters (a
        line end) escaped, so each warning stays on its line."""
        return [f"{shown(path)}, line {line}: field {json.dumps(name, ensure_ascii=False)} is not "
                f"read, so it is ignored (a typo?); the fields read are {', '.join(self.read)}"
                for name, line in self.first_line.items()]


def write_atomic(path: Path, data: dict, *, indent: int = 2, sort_keys: bool = False) -> None:
    with replacing(path) as handle:
        json.dump(data, handle, indent=indent, sort_keys=sort_keys, ensure_ascii=False,
                  default=str)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """``path.write_bytes(data)`` as :func:`replacing` writes: the old file or the new one,
    never half (an image a page serves, a report)."""
    with replacing(path, binary=True) as handle:
        handle.write(data)


@contextmanager
def replacing(path: Path, newline: str | None = None, *, binary: bool = False
              ) -> Iterator[IO]:
    """A text file (``binary``: a file of bytes) that takes ``path``'s place once the block
    completes: an error or Ctrl-C midway leaves the file that was there, whole. Through a
    symlink the file it points to is replaced, and what is no file (``/dev/stdout``, a named
    pipe) is written as it is: a file put in its place would keep the text from its reader."""
    mode = {"mode": "wb"} if binary else {"mode": "w", "encoding": "utf-8", "newline": newline}
    if path.exists() and not path.is_file():
        with open(path, **mode) as handle:
            yield handle
        return
    asked, path = path, path.resolve()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with _temporary(tmp, asked, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_path(path.parent)


def _temporary(tmp: Path, asked: Path, mode: dict) -> IO:
    """``tmp`` open for writing; a refusal (a read-only folder) names ``asked``, the file the
    user gave, not the hidden temporary file they never heard of."""
    try:
        return open(tmp, **mode)
    except OSError as exc:
        raise type(exc)(exc.errno, exc.strerror, str(asked)) from None


def fsync_path(path: Path) -> None:
    """Flush a file, or a folder's entries (so a rename survives a crash), to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read(path: Path, error: type[Exception], fix: str) -> dict:
    """The JSON object in ``path``; ``error`` naming the file and ``fix`` when it is missing,
    unreadable, not UTF-8 or not a JSON object."""
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise error(f"{shown(path)} is missing; {fix}") from None
    except OSError as exc:  # a folder in its place, a file this user may not read
        raise error(f"{shown(path)} can't be read ({exc.strerror}); {fix}") from None
    except UnicodeDecodeError as exc:
        raise error(f"{shown(path)} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at "
                    f"position {exc.start}); {fix}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{shown(path)} is not valid JSON ({exc}); {fix}") from None
    if not isinstance(data, dict):
        raise error(f"{shown(path)} is not a JSON object; {fix}")
    return data


def check_version(path: Path, found: object, supported: int, error: type[Exception],
                  fix: str) -> None:
    """Refuse a record of a schema version this code does not know (e.g. from a newer one)."""
    if found != supported:
        raise error(f"{shown(path)}: schema version {found!r}, this version of chatbot-builder "
                    f"reads {supported}; {fix}")
