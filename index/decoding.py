"""Bytes to text in whatever common encoding a document was saved in: UTF-8, UTF-16 and
UTF-32 (with a byte-order mark, or UTF-16 without one), or a legacy code page found by
charset_normalizer; binary data is a :class:`LoadError` naming what gave it away."""

from __future__ import annotations

import codecs
from typing import TYPE_CHECKING

from index.errors import LoadError

if TYPE_CHECKING:
    from charset_normalizer import CharsetMatch, CharsetMatches


def decode(data: bytes) -> str:
    """Text from bytes in any common encoding; binary data is a :class:`LoadError`."""
    if (text := decode_wide(data)) is not None:
        return text
    # A UTF-8 mark over text an older editor saved in a legacy code page: the mark is dropped
    # and the rest decoded or detected like any text (it failed the sync with a traceback).
    data = data.removeprefix(codecs.BOM_UTF8)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    matches = from_bytes(data)
    best = matches.best()
    if best is None:
        raise LoadError("binary file, not text (no text encoding fits it)")
    return str(_prefer_western(matches, best))


def decode_wide(data: bytes) -> str | None:
    """The text of UTF-32 or UTF-16 (with a byte-order mark, or UTF-16 without one); None for
    bytes without a NUL, which are 8-bit text or nothing; other bytes with one are binary, a
    :class:`LoadError` (the index's documents and the data commands' transcripts alike)."""
    if (text := decode_marked(data)) is not None:
        return text
    # A NUL anywhere, not only in the first 8 KB (as git looks): a text header over binary data,
    # or the NULs a crash leaves in a log, would be read as text, NULs and all.
    if (nul := data.find(b"\x00")) >= 0:
        if text := utf16_without_mark(data):
            return text
        raise LoadError(f"binary file, not text: a NUL byte at byte {nul} (check its extension)")
    return None


def decode_marked(data: bytes) -> str | None:
    """The text of UTF-32 or UTF-16 that starts with a byte-order mark, None without one; a
    mark over bytes that are not that encoding is a :class:`LoadError`."""
    # UTF-32's little-endian mark begins with UTF-16's, so it is looked for first
    for marks, encoding in (((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE), "utf-32"),
                            ((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE), "utf-16")):
        if data.startswith(marks):
            try:
                return data.decode(encoding)
            except UnicodeDecodeError as exc:  # cut short, or not that encoding at all
                name = encoding.upper()
                raise LoadError(f"starts with a {name} byte-order mark but is not valid {name} "
                                f"(byte {exc.start}: {exc.reason}); save it again as UTF-8"
                                ) from exc
    return None


def utf16_without_mark(data: bytes) -> str | None:
    """The text of UTF-16 written without a byte-order mark (some Windows tools do), told by
    its NULs: Latin-script text has one in nearly every other byte and none between them."""
    sample = data[:4096]
    if len(data) % 2 or len(sample) < 4:
        return None
    for order, (high, low) in (("le", (sample[1::2], sample[::2])),
                               ("be", (sample[::2], sample[1::2]))):
        if high.count(0) >= 0.7 * len(high) and low.count(0) == 0:
            try:
                return data.decode(f"utf-16-{order}")
            except UnicodeDecodeError:
                return None
    return None


def _prefer_western(matches: CharsetMatches, best: CharsetMatch) -> CharsetMatch:
    """Of the encodings that fit a short text equally well, Windows' Western European code page
    (the commonest legacy one): the detector's first pick there can be Central European,
    which reads "crème" as "crčme"."""
    for match in matches:
        if (match.encoding == "cp1252" and match.chaos == best.chaos
                and match.coherence == best.coherence):
            return match
    return best


# ----------------------------------------------------------------------------- formats
