"""A cap on the request bodies of the web UI's routes (Gradio's, the login form).

Gradio reads a request's whole body into memory, with no limit of its own but a file upload's
size; the ``/v1`` routes check their bodies themselves (``app/api_body.py``). Every other
route may take what one API request may send, so no caller can make the server hold more.
An upload's files are streamed to disk, each within ``index.max_file_mb``, all of them within
``index.max_upload_mb`` and within what leaves ``index.min_free_disk_mb`` free on the disks of
the data dir and of Gradio's upload cache (uploads come again and again, and together: the
margin holds for all the uploads arriving at once, ``DiskRoom``); its other form
fields are held in memory, so they are held to that same allowance. An upload refused part-way
leaves none of its files on disk. A refusal is a 413 (400 for a malformed upload, 507 for a
disk near its margin) with a JSON ``detail``, which the page shows in words.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

API_PREFIX = "/v1/"
UPLOAD_PATH = "/gradio_api/upload"
"""Files are streamed to disk, each within ``index.max_file_mb`` (``app/ui/app.py``), all of
them within ``index.max_upload_mb`` (here)."""


class WebUiBodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int, max_upload_mb: float,
                 min_free_disk_mb: float = 0, data_dir: Path | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_upload_mb = max_upload_mb
        self.min_free_disk_mb = min_free_disk_mb
        self.data_dir = data_dir
        self.disk = DiskRoom(self.disk_room)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path.startswith(API_PREFIX):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if path == UPLOAD_PATH:
            await self.upload(scope, receive, send, headers)
            return
        if _declared_length(headers) > self.max_bytes:  # refused before it is sent
            await JSONResponse({"detail": self.too_large()}, 413)(scope, receive, send)
            return
        count = BodyBytes(self.max_bytes, self.too_large()).feed

        async def counted() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                count(message.get("body", b""))
            return message

        await self.app(scope, counted, send)

    def too_large(self) -> str:
        return (f"this request is larger than the {self.max_bytes:,} bytes the server reads; "
                "shorten the message")

    async def upload(self, scope: Scope, receive: Receive, send: Send, headers: Headers) -> None:
        """Gradio's upload route, its body checked as Gradio reads it. A refusal is raised as
        Gradio's own parse error, on which it deletes the files it wrote; its plain-text
        answer is then replaced by the refusal's."""
        too_large = (f"this upload is larger than the {self.max_upload_mb:g} MB one upload may "
                     "hold (index.max_upload_mb); upload fewer files at a time")
        disk_full = (f"the server keeps {self.min_free_disk_mb:g} MB of its disk free "
                     "(index.min_free_disk_mb) and this upload would leave less; remove "
                     "documents no longer needed, or ask the server's admin to free space")
        max_upload_bytes, declared = int(self.max_upload_mb * 2**20), _declared_length(headers)
        share = self.disk.share(declared) if declared <= max_upload_bytes else None
        if share is None:  # refused before it is sent
            status, refusal = (413, too_large) if declared > max_upload_bytes else (507, disk_full)
            await JSONResponse({"detail": refusal}, status)(scope, receive, send)
            return
        total = BodyBytes(max_upload_bytes, too_large)
        fields = FormFieldBytes(headers.get("content-type", ""), self.max_bytes)
        refused: list[HTTPException] = []

        async def checked() -> Message:
            message = await receive()
            try:
                if message["type"] == "http.request":
                    total.feed(message.get("body", b""))
                    share.feed(message.get("body", b""), disk_full)
                    fields.feed(message.get("body", b""))
                elif message["type"] == "http.disconnect":  # a page closed mid-upload
                    raise HTTPException(400, "the upload was cut off before its end")
            except HTTPException as exc:
                refused.append(exc)
                raise _gradio_parse_error(exc.detail) from exc
            return message

        async def answer(message: Message) -> None:
            if not refused:
                await send(message)
            elif message["type"] == "http.response.start":
                refusal = JSONResponse({"detail": refused[0].detail}, refused[0].status_code)
                await refusal(scope, receive, send)

        try:
            await self.app(scope, checked, answer)
        finally:
            share.close(kept=not refused)

    def disk_room(self) -> int:
        """Bytes an upload may bring before the fuller of the disks it goes to (Gradio's
        upload cache, then the data dir's uploads) has less than ``min_free_disk_mb`` free."""
        from gradio.utils import get_upload_folder

        folders = [Path(get_upload_folder()), *([self.data_dir] if self.data_dir else [])]
        free = min(shutil.disk_usage(_nearest_existing(folder)).free for folder in folders)
        return free - int(self.min_free_disk_mb * 2**20)


class DiskRoom:
    """The room on the upload disks shared by uploads arriving together: measured as the first
    of them starts, then each one's bytes (its declared length at once) are taken from it until
    the last of them ends, so together they leave ``min_free_disk_mb`` free. A refused upload's
    bytes, which Gradio deletes, are given back."""

    def __init__(self, measure: Callable[[], int]) -> None:
        self.measure = measure
        self.uploads = 0
        self.left = 0

    def share(self, declared: int) -> DiskShare | None:
        """An upload's share, its declared length taken; ``None`` when that is more than left."""
        if not self.uploads:
            self.left = self.measure()
        if declared > self.left:
            return None
        self.left -= declared
        self.uploads += 1
        return DiskShare(self, declared)


class DiskShare:
    """One upload's bytes taken from its ``DiskRoom`` as they arrive (a 507 once none is left)."""

    def __init__(self, room: DiskRoom, taken: int) -> None:
        self.room = room
        self.taken = taken
        self.received = 0

    def feed(self, chunk: bytes, refusal: str) -> None:
        self.received += len(chunk)
        more = self.received - self.taken
        if more > 0:
            if more > self.room.left:
                raise HTTPException(507, refusal)
            self.room.left -= more
            self.taken = self.received

    def close(self, kept: bool) -> None:
        """The upload ended: what it took and did not write (all of it, if refused) goes back."""
        self.room.uploads -= 1
        self.room.left += self.taken - self.received if kept else self.taken


def _nearest_existing(folder: Path) -> Path:
    """``folder``, or the nearest folder above it that exists (a data dir not yet made)."""
    folder = folder.resolve()
    while not folder.exists():
        folder = folder.parent
    return folder


def _gradio_parse_error(message: str) -> Exception:
    """The error Gradio's upload route expects of a bad body (the web UI has loaded gradio)."""
    from gradio.route_utils import MultiPartException

    return MultiPartException(message)


def _declared_length(headers: Headers) -> int:
    try:
        return int(headers.get("content-length", 0))
    except ValueError:  # the server refuses such a request itself
        return 0


class BodyBytes:
    """Counts a body as it arrives and refuses it (a 413 from the route reading it) once it
    passes ``max_bytes``: a body sent without its length is refused as well."""

    def __init__(self, max_bytes: int, refusal: str) -> None:
        self.max_bytes = max_bytes
        self.refusal = refusal
        self.total = 0

    def feed(self, chunk: bytes) -> None:
        self.total += len(chunk)
        if self.total > self.max_bytes:
            raise HTTPException(413, self.refusal)


class FormFieldBytes:
    """Reads a multipart body as it arrives, beside Gradio's own reading of it, and refuses it
    (413, as Gradio's route answers it) once its fields other than files pass ``max_bytes``."""

    def __init__(self, content_type: str, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.total = 0
        self._header = [b"", b""]  # the part header being read: name, value
        self._in_file = False
        boundary = parse_options_header(content_type)[1].get(b"boundary")
        # without a boundary Gradio refuses the body itself
        self._parser = MultipartParser(boundary, callbacks={
            "on_header_field": lambda data, start, end: self._add_header(0, data[start:end]),
            "on_header_value": lambda data, start, end: self._add_header(1, data[start:end]),
            "on_header_end": self._header_ended,
            "on_part_begin": self._part_began,
            "on_part_data": self._part_data}) if boundary else None

    def feed(self, chunk: bytes) -> None:
        if self._parser is None:
            return
        try:
            self._parser.write(chunk)
        except MultipartParseError:  # Gradio's reading, the same parser's, refuses it too
            self._parser = None

    def _add_header(self, which: int, data: bytes) -> None:
        self._header[which] += data

    def _header_ended(self) -> None:
        name, value = self._header
        if name.lower() == b"content-disposition":
            options = parse_options_header(value)[1]
            self._in_file = b"filename" in options
            field = options.get(b"name", b"")
            if self._in_file and field != b"files":  # Gradio would keep it, unread, a day
                raise HTTPException(400, "an upload's files go in the form field 'files'; "
                                         f"{field.decode(errors='replace')!r} is not read")
        self._header = [b"", b""]

    def _part_began(self) -> None:
        self._in_file = False

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file:
            return
        self.total += end - start
        if self.total > self.max_bytes:
            raise HTTPException(413, f"the upload's form fields (anything but its files) pass "
                                     f"{self.max_bytes:,} bytes; send files only")
