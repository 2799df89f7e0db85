"""Answers, sources and timings as the web page shows them: plain functions, no gradio.

Sources are numbered by their position in the prompt ([1] is the first passage the model was
given), so the citation [2] in an answer and the panel entry [2] are the same passage.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence

from app.ui.support import highlighted
from chatbot.errors import ChatbotError
from index.types import Hit

CITATION = re.compile(r"\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]")
SOURCES_PLACEHOLDER = ('<div class="cb-sources-empty">Sources used by an answer appear here; '
                       'click a citation such as [1] to jump to its passage.</div>')


def error_text(exc: ChatbotError) -> str:
    """An error as a toast or modal shows it: Gradio renders the message as HTML, and the
    reader may be a stranger (``ChatbotError.public``)."""
    return html.escape(exc.public, quote=False)


def anchor(prefix: str, number: int) -> str:
    return f"{prefix}-{number}"


def cited_numbers(text: str, count: int) -> set[int]:
    """The source numbers an answer cites."""
    found = set()
    for match in CITATION.finditer(text):
        found.update(int(n) for n in re.split(r"\s*,\s*", match.group(1)))
    return {n for n in found if 1 <= n <= count}


def sources_html(hits: Sequence[Hit], prefix: str, cited: set[int] = frozenset(),
                 heading: str = "",
                 highlights: Mapping[int, Sequence[tuple[int, int]]] | None = None) -> str:
    """The sources panel: one entry per passage with source, location, score and text;
    ``highlights`` are the spans of passage ``n``'s sentences that back the answer."""
    if not hits:
        return (f'<div class="cb-sources">{heading}<div class="cb-sources-empty">'
                'No passages were used for this answer.</div></div>')
    highlights = highlights or {}
    entries = [_source_entry(n, hit, prefix, n in cited, highlights.get(n, ()))
               for n, hit in enumerate(hits, start=1)]
    return f'<div class="cb-sources">{heading}{"".join(entries)}</div>'


def _source_entry(number: int, hit: Hit, prefix: str, cited: bool,
                  spans: Sequence[tuple[int, int]]) -> str:
    location = f' · {html.escape(hit.location)}' if hit.location else ""
    mark = ' <span class="cb-cited">cited</span>' if cited else ""
    return (f'<details class="cb-source" id="{anchor(prefix, number)}" open>'
            f'<summary><b>[{number}]</b> <code>{html.escape(hit.source)}</code>{location}'
            f' · score {float(hit.score):.3f}{mark}</summary>'
            f'<pre class="cb-passage">{highlighted(hit.text, spans, prefix, number)}</pre>'
            '</details>')


def meta_line(variant: str | None, timings: dict, refused: bool = False,
              filtered: Sequence[str] = ()) -> str:
    """One line under the sources heading: variant and the timings users ask about."""
    parts = [f"variant <b>{html.escape(variant)}</b>"] if variant else []
    if timings.get("first_token_ms") is not None:
        parts.append(f"first token {timings['first_token_ms'] / 1000:.2f} s")
    if timings.get("tokens_per_s"):
        parts.append(f"{timings['tokens_per_s']:.1f} tokens/s")
    if timings.get("total_ms") is not None:
        parts.append(f"total {timings['total_ms'] / 1000:.2f} s")
    if refused:
        parts.append("no passage qualified: refused by policy")
    if filtered:
        parts.append("changed by filters: " + ", ".join(html.escape(f) for f in filtered))
    return f'<div class="cb-meta">{" · ".join(parts)}</div>' if parts else ""


CUT_OFF_NOTICE = ('<div class="cb-flag">This answer was cut off at the length limit '
                  '(generation.max_new_tokens): ask for the rest, or ask a narrower question.'
                  '</div>')
"""Beside an answer that stopped at the token limit: it reads as finished otherwise."""


def query_line(query: str | None) -> str:
    """What the documents were searched with: a follow-up's query carries the turn it refers
    to, so the sources can be explained."""
    return f'<div class="cb-meta">searched: <i>{html.escape(query)}</i></div>' if query else ""


CSS = """
.cb-sources { font-size: 0.92em; }
.cb-source { border: 1px solid var(--border-color-primary); border-radius: 6px;
             margin: 0 0 8px 0; padding: 4px 8px; scroll-margin-top: 12px; }
.cb-source:target { outline: 2px solid var(--color-accent); background: var(--color-accent-soft); }
.cb-source summary { cursor: pointer; }
.cb-passage { white-space: pre-wrap; font-size: 0.9em; max-height: 14em; overflow: auto;
              margin: 4px 0 0 0; }
.cb-cited { color: var(--color-accent); font-weight: 600; }
.cb-meta { color: var(--body-text-color-subdued); margin-bottom: 6px; }
.cb-sources-empty { color: var(--body-text-color-subdued); }
.cb-unsupported { text-decoration: underline wavy #d9534f; text-decoration-skip-ink: none;
                  text-underline-offset: 3px; }
a.cb-support-link { font-size: 0.8em; vertical-align: super; text-decoration: none; }
mark.cb-support { background: var(--color-accent-soft); color: inherit; border-radius: 3px; }
.cb-flag { border-left: 3px solid #e0a030; padding: 2px 8px; margin-bottom: 6px; }
#cb-dashboard .prose, #cb-data-report .prose { overflow-x: auto; }
#cb-dashboard :is(th, td), #cb-data-report :is(th, td) { overflow-wrap: normal;
                                                       word-break: normal; }
#cb-chat .message-buttons-right button[aria-label="Edit"] { display: none; }
#cb-chat textarea.edit-textarea { width: min(640px, 60vw) !important;
                                  min-height: 8em !important; }
"""

# The answer stays the model's plain text (so copying it copies what the model wrote); this
# script turns each citation [n] in answer k into a link to passage n of answer k's sources,
# and a click opens that passage (asking the page to show answer k's sources first if needed).
HEAD = """<script>
// Runs fn once per animation frame in which the page changed: Gradio redraws answers, pop-ups
// and drop boxes whenever it likes, and each script fixes up what it drew.
window.cbOnPageChange = (fn) => {
  let queued = false;
  new MutationObserver(() => {
    if (queued) return;
    queued = true;
    requestAnimationFrame(() => { queued = false; fn(); });
  }).observe(document.documentElement, {subtree: true, childList: true, characterData: true});
};
(() => {
  const CITE = /\\[(\\d{1,3})\\]/g;
  function linkAnswer(bot, answer) {
    const walker = document.createTreeWalker(bot, NodeFilter.SHOW_TEXT);
    const found = [];
    while (walker.nextNode()) {
      const node = walker.currentNode;
      CITE.lastIndex = 0;
      if (node.parentElement !== bot && CITE.test(node.nodeValue)
          && !node.parentElement.closest("a, code, pre, button")) found.push(node);
    }
    for (const node of found) {
      const text = node.nodeValue, parts = document.createDocumentFragment();
      let last = 0;
      text.replace(CITE, (match, n, offset) => {
        parts.append(text.slice(last, offset));
        const link = document.createElement("a");
        link.href = `#src-${answer}-${n}`;
        link.className = "cb-cite";
        link.textContent = match;
        parts.append(link);
        last = offset + match.length;
        return match;
      });
      parts.append(text.slice(last));
      node.replaceWith(parts);
    }
  }
  window.cbOnPageChange(() => document.querySelectorAll('#cb-chat [data-testid="bot"]')
    .forEach((bot, index) => linkAnswer(bot, index + 1)));
  function reveal(id) {
    const target = document.getElementById(id);
    if (!target) return false;
    target.closest("details").open = true;  // a passage, or the passage of a sentence
    target.scrollIntoView({behavior: "smooth", block: "center"});
    document.querySelectorAll(".cb-flash").forEach((e) => e.classList.remove("cb-flash"));
    target.classList.add("cb-flash");
    return true;
  }
  document.addEventListener("click", (event) => {
    const link = event.target.closest && event.target.closest("a.cb-cite");
    if (!link) return;
    event.preventDefault();
    const id = link.getAttribute("href").slice(1);
    if (reveal(id)) { event.stopPropagation(); return; }
    let tries = 0;  // the click selects the answer; its sources arrive shortly
    const timer = setInterval(() => { if (reveal(id) || ++tries > 40) clearInterval(timer); }, 100);
  }, true);
})();
</script>
<script>
// An answer opened for editing (a correction) shows its text without the marks attribution
// added to it; the server strips them too (support.plain_answer).
(() => {
  function plain(box) {
    const text = box.value.replace(/^<div class="cb-flag">[\\s\\S]*?<\\/div>\\n\\n/, "")
      .replace(/ <a class="cb-cite cb-support-link" [^>]*>\\[\\d+\\]<\\/a>/g, "")
      .replace(/<span class="cb-unsupported" title="[^"]*">([\\s\\S]*?)<\\/span>/g, "$1");
    if (text !== box.value) {
      box.value = text;
      box.dispatchEvent(new Event("input", {bubbles: true}));
    }
  }
  new MutationObserver(() => {
    document.querySelectorAll("#cb-chat textarea.edit-textarea:not([data-cb-plain])")
      .forEach((box) => { box.dataset.cbPlain = "1"; requestAnimationFrame(() => plain(box)); });
  }).observe(document.documentElement, {subtree: true, childList: true});
})();
</script>
<script>
// Files chosen for an upload (the Documents tab's, or the Training tab's transcripts): the page
// knows at once what becomes of them, an upload it refuses before sending (past
// index.max_file_mb or index.max_upload_mb, set in window.cbUploadLimits) included; the
// Documents tab's status line says it, through its hidden button.
(() => {
  const mb = (bytes) => +(bytes / 2 ** 20).toPrecision(2);
  function note(files) {
    const limits = window.cbUploadLimits;
    const big = files.find((file) => file.size > limits.file * 2 ** 20);
    const total = files.reduce((sum, file) => sum + file.size, 0);
    if (big) return `Not uploaded: ${big.name} (${mb(big.size)} MB) is larger than the ` +
      `${limits.file} MB a file may be (index.max_file_mb).`;
    if (total > limits.upload * 2 ** 20) return `Not uploaded: the ${files.length} files ` +
      `come to ${mb(total)} MB, more than the ${limits.upload} MB one upload may hold ` +
      `(index.max_upload_mb); upload fewer at a time.`;
    return `Uploading and indexing ${files.length} file(s)...`;
  }
  function tell(text) {
    window.cbUploadNote = text;
    const button = document.getElementById("cb-upload-note");
    if (button) button.click();
  }
  function chosen(files, box) {
    if (!files || !files.length || !box || !window.cbUploadLimits) return;
    window.cbUploadNote = note([...files]);
    if (box.id === "cb-upload") tell(window.cbUploadNote);
  }
  document.addEventListener("change", (event) => {
    if (event.target.matches && event.target.matches("input[type=file]"))
      chosen(event.target.files, event.target.closest(".block"));
  }, true);
  document.addEventListener("drop", (event) => {
    const box = event.target.closest && event.target.closest(".block");
    if (box && box.querySelector("input[type=file]"))
      chosen(event.dataTransfer && event.dataTransfer.files, box);
  }, true);
  // Gradio's pop-up for a refused upload gave its own check's words ('File(s) exceed the
  // maximum allowed size of 10.2 Kb: "big.md"') or the server's answer as sent ('HTTP 413:
  // {"detail": ...}'); it says the line above instead, or the server's reason in words.
  function readable(text) {
    const sent = /^HTTP (\\d{3}): ([\\s\\S]*)$/.exec(text);
    if (!sent && !/^File\\(s\\) exceed the maximum allowed size/.test(text)) return null;
    if ((window.cbUploadNote || "").startsWith("Not uploaded")) return window.cbUploadNote;
    if (!sent) return `Not uploaded: a file is larger than the ${window.cbUploadLimits.file} ` +
      `MB a file may be (index.max_file_mb).`;
    let reason = sent[2].trim();
    try { reason = JSON.parse(reason).detail; } catch (error) { /* the body as sent */ }
    if (typeof reason !== "string" || !reason || reason.length > 300 || reason.includes("<"))
      reason = `the server refused it (HTTP ${sent[1]})`;
    const told = `Not uploaded: ${reason.replace(/\\.$/, "")}.`;
    const status = document.getElementById("cb-upload-status");
    if (status && status.innerText.startsWith("Uploading and indexing")) tell(told);
    return told;
  }
  window.cbOnPageChange(() => {
    document.querySelectorAll('[data-testid="toast-text"]').forEach((toast) => {
      const told = readable(toast.textContent.trim());
      if (told) toast.textContent = told;
    });
    // A refused upload left its drop box under an 'Error' mark that took the next click
    // (no file chooser opened) until its own small close button was found; the pop-up and
    // the status line say what happened, so the mark is closed at once.
    document.querySelectorAll('[data-testid="status-tracker"] .clear-status button')
      .forEach((close) => {
        const box = close.closest(".block");
        if (box && box.querySelector("input[type=file]")
            && close.closest('[data-testid="status-tracker"]').querySelector(".error"))
          close.click();
      });
  });
})();
</script>
<style>.cb-flash { outline: 2px solid var(--color-accent); }
a.cb-cite { cursor: pointer; }</style>"""


def upload_limits(max_file_mb: float, max_upload_mb: float) -> str:
    """The script giving the page the upload limits it checks chosen files against."""
    return (f"<script>window.cbUploadLimits = {{file: {max_file_mb:g}, "
            f"upload: {max_upload_mb:g}}};</script>")
