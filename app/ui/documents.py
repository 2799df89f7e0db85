"""The Documents tab: upload and index files, list them with chunk counts, remove, try a search.

The tab talks to a small ``Documents`` object (the bot's index in ``chatbot serve``), never to
the index package itself.
"""

from __future__ import annotations

import html
import math
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import gradio as gr

from chatbot.errors import ChatbotError
from app.ui.render import error_text, sources_html
from index.text import counted
from index.types import Hit

SEARCH_MODES = ["hybrid", "dense", "bm25"]
Progress = Callable[[int, int, str], None]
"""``progress(done, total, path)`` after each file (first ``(0, total, "")``)."""


class DocumentRow(Protocol):
    source: str
    chunks: int
    indexed_at: str


class Failure(Protocol):
    source: str
    reason: str


class SyncResult(Protocol):
    failed: Sequence[Failure]

    def summary(self) -> str: ...


class Documents(Protocol):
    """What the tab needs from an index; ``chatbot.documents.BotDocuments`` is the real one."""

    upload_dir: Path
    """Where uploaded files are kept: the index reads them again on every sync."""

    def sync(self, paths: Sequence[Path], progress: Progress | None = None,
             waiting: Callable[[], None] | None = None,
             embedding: Callable[[int, int], None] | None = None) -> SyncResult:
        """``waiting()``: another sync holds the index, and this one waits for it;
        ``embedding(done, total)``: chunks embedded so far, of those to embed."""

    def list(self) -> Sequence[DocumentRow]: ...

    def remove(self, source: str, waiting: Callable[[], None] | None = None) -> list[str]: ...

    def search(self, query: str, k: int, mode: str) -> list[Hit]: ...


COLUMNS = ["source", "chunks", "indexed at"]
COLUMN_WIDTHS = ["45%", "22%", "33%"]
"""Shares of the list's width, not sized to the cells: a long file name would push the chunk
count off a phone's screen."""
WAITING = ("waiting for another sync of the index to finish (a `chatbot index sync`, or another "
           "upload)")
MAX_QUERY_CHARS = 2_000
"""Longest search: keyword search scores each word of a query against every chunk, so one
pasted book would hold the server for seconds; the embedder reads only the start anyway."""


class DocumentActions:
    """The tab's event functions, callable without a server."""

    def __init__(self, documents: Documents) -> None:
        self.documents = documents
        self.listing: list = []
        """The table and the remove dropdown, refreshed when the page loads."""

    def table(self) -> tuple[list[list], gr.Dropdown]:
        """The indexed documents; a damaged index lists none and says why (it runs as the
        page opens, where an error would leave only a blank toast)."""
        try:
            listed = self.documents.list()
        except ChatbotError as exc:
            gr.Warning(error_text(exc))
            listed = []
        rows = [[d.source, d.chunks, d.indexed_at] for d in listed]
        choices = [d.source for d in listed]
        return rows, gr.update(choices=choices, value=None)

    def upload(self, files: list[str] | None, progress: gr.Progress = gr.Progress()) -> tuple:
        """Move the uploads out of Gradio's cache next to the index's other uploads, index
        them, empty the drop box. A file not indexed is deleted, and the file it replaced (an
        upload of the same name that is still indexed) is put back; a refused upload's files
        are deleted too, so the disk holds one copy of what the index holds and no more."""
        if not files:
            gr.Warning("Choose one or more files to upload first.")
            return (gr.update(), *self.table(), None)
        names = [Path(f).name for f in files]
        gone = [name for f, name in zip(files, names) if not Path(f).is_file()]
        twice = sorted({name for name in names if names.count(name) > 1})
        if gone or twice:
            for file in files:
                Path(file).unlink(missing_ok=True)
            gr.Warning(f"{', '.join(gone)}: no longer on the server (an upload is indexed "
                       "once); upload again." if gone else
                       f"More than one file is named {', '.join(twice)}; uploads are kept by "
                       "name, so one would replace the other. Rename them and upload again.")
            return (gr.update(), *self.table(), None)
        replaced = {}
        kept = [self._keep(Path(f), replaced) for f in files]

        def report(done: int, total: int, path: str) -> None:
            progress((done, total), desc=f"indexed {Path(path).name}" if path else "reading")

        def embedding(done: int, total: int) -> None:  # one large file is minutes of this
            progress((done, total), desc=f"embedding the chunks: {done} of {total}")

        try:
            result = self.documents.sync(kept, progress=report, waiting=_saying_it_waits(progress),
                                         embedding=embedding)
        except ChatbotError as exc:
            _settle(kept, replaced, failed=set(kept))
            raise gr.Error(error_text(exc), print_exception=False) from exc
        failed = {Path(failure.source) for failure in result.failed}
        _settle(kept, replaced, failed)
        indexed = len(kept) - len(failed)
        lines = [f"Indexed {indexed} of {counted(len(kept), 'file')}: "
                 f"{html.escape(result.summary())}"]
        lines += [f"- not indexed: `{Path(f.source).name}`: {html.escape(f.reason)}"
                  for f in result.failed]
        return ("\n".join(lines), *self.table(), None)

    def _keep(self, upload: Path, replaced: dict[Path, Path]) -> Path:
        """Move ``upload`` into the uploads folder; a file of that name already there is moved
        aside into ``replaced`` (target -> the earlier file) until the new one is indexed."""
        target_dir = self.documents.upload_dir
        target_dir.mkdir(parents=True, exist_ok=True)
        target = target_dir / upload.name
        if target.exists() and target not in replaced:
            replaced[target] = target.replace(target_dir / f".{upload.name}.earlier")
        shutil.move(upload, target)
        return target

    def remove(self, source: str | None, progress: gr.Progress = gr.Progress()) -> tuple:
        if not source:
            gr.Warning("Pick a document to remove.")
            return (gr.update(), *self.table())
        try:
            removed = self.documents.remove(source, waiting=_saying_it_waits(progress))
        except ChatbotError as exc:
            raise gr.Error(error_text(exc), print_exception=False) from exc
        return (f"Removed {counted(len(removed), 'document')}.", *self.table())

    def search(self, query: str, k: int, mode: str) -> str:
        if not (query or "").strip():
            gr.Warning("Type something to search for.")
            return ""
        if len(query) > MAX_QUERY_CHARS:
            gr.Warning(f"The search is {len(query):,} characters long; the limit is "
                       f"{MAX_QUERY_CHARS:,}. Search with a sentence or a few words.")
            return ""
        if not isinstance(k, (int, float)) or not math.isfinite(k):
            # the slider keeps k in 1..20, but NaN passes its checks (NaN < 1 is false) and a
            # caller of the Gradio API can send it; int(NaN) would answer with Python's words
            gr.Warning(f"k must be a whole number of passages from 1 to 20, not {k}.")
            return ""
        try:
            hits = self.documents.search(query.strip(), int(k), mode)
        except ChatbotError as exc:
            raise gr.Error(error_text(exc), print_exception=False) from exc
        if not hits:
            return '<div class="cb-sources-empty">No passage matches.</div>'
        return sources_html(hits, "search")


def _settle(kept: list[Path], replaced: dict[Path, Path], failed: set[Path]) -> None:
    """After a sync: a file not indexed (200 MB, say) is not kept, and the earlier file it was
    to replace is put back; an indexed file's earlier one is deleted."""
    for target in kept:
        earlier = replaced.get(target)
        if target in failed and earlier:
            earlier.replace(target)
        elif target in failed:
            target.unlink(missing_ok=True)
        elif earlier:
            earlier.unlink(missing_ok=True)


def _saying_it_waits(progress: gr.Progress) -> Callable[[], None]:
    """What an upload or a removal shows while another sync holds the index."""
    return lambda: progress(None, desc=WAITING)


def build_documents_tab(documents: Documents) -> DocumentActions:
    """Lay out the Documents tab inside the current ``gr.Blocks`` and wire its events."""
    actions = DocumentActions(documents)
    with gr.Row():
        with gr.Column():
            files = gr.File(file_count="multiple", label="Upload files: they are indexed at once",
                            elem_id="cb-upload")
            status = gr.Markdown(elem_id="cb-upload-status")
            # clicked by the page's script (render.HEAD) when files are chosen
            note = gr.Button(visible="hidden", elem_id="cb-upload-note")
        with gr.Column():
            with gr.Row():
                # too wide to share a phone's row: there the buttons go under it
                chosen = gr.Dropdown([], label="Document", scale=3, min_width=240,
                                     allow_custom_value=False, elem_id="cb-remove-pick")
                remove_button = gr.Button("Remove", variant="stop", scale=1)
                refresh = gr.Button("Refresh", scale=1)
    table = gr.Dataframe(headers=COLUMNS, label="Indexed documents", interactive=False,
                         wrap=True, column_widths=COLUMN_WIDTHS, elem_id="cb-documents")
    with gr.Row():
        query = gr.Textbox(label="Try a search", scale=4, elem_id="cb-search")
        k = gr.Slider(1, 20, value=5, step=1, label="k", scale=1)
        mode = gr.Radio(SEARCH_MODES, value="hybrid", label="mode", scale=2)
        search = gr.Button("Search", scale=1)
    results = gr.HTML(js_on_load=None, elem_id="cb-search-results")
    listing = [table, chosen]
    files.upload(actions.upload, [files], [status, *listing, files])
    note.click(None, None, status, js="() => window.cbUploadNote")
    remove_button.click(actions.remove, [chosen], [status, *listing])
    refresh.click(actions.table, None, listing)
    for trigger in (query.submit, search.click):
        trigger(actions.search, [query, k, mode], results)
    actions.listing = listing
    return actions
