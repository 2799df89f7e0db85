"""Answers, sources and timings as the web page shows them: plain functions, no gradio.

Sources are numbered by their position in the prompt ([1] is the first passage the model was
given), so the citation [2] in an answer and the panel entry [2] are the same passage.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence

from index.types import Hit

CITATION = re.compile(r"\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]")
SOURCES_PLACEHOLDER = ('<div class="cb-sources-empty">Sources used by an answer appear here; '
                       'click a citation such as [1] to jump to its passage.</div>')


def anchor(prefix: str, number: int) -> str:
    return f"{prefix}-{number}"


def link_citations(text: str, prefix: str, count: int) -> str:
    """Markdown in which each citation ``[n]`` of a real source links to its panel entry.

    Numbers outside 1..count (the model invented them) stay plain text.
    """

    def link(match: re.Match) -> str:
        numbers = [int(n) for n in re.split(r"\s*,\s*", match.group(1))]
        if not all(1 <= n <= count for n in numbers):
            return match.group(0)
        return "".join(f"[\\[{n}\\]](#{anchor(prefix, n)})" for n in numbers)

    return CITATION.sub(link, text)


def cited_numbers(text: str, count: int) -> set[int]:
    """The source numbers an answer cites."""
    found = set()
    for match in CITATION.finditer(text):
        found.update(int(n) for n in re.split(r"\s*,\s*", match.group(1)))
    return {n for n in found if 1 <= n <= count}


def sources_html(hits: Sequence[Hit], prefix: str, cited: set[int] = frozenset(),
                 heading: str = "") -> str:
    """The sources panel: one entry per passage with source, location, score and text."""
    if not hits:
        return (f'<div class="cb-sources">{heading}<div class="cb-sources-empty">'
                'No passages were used for this answer.</div></div>')
    entries = [_source_entry(n, hit, prefix, n in cited) for n, hit in enumerate(hits, start=1)]
    return f'<div class="cb-sources">{heading}{"".join(entries)}</div>'


def _source_entry(number: int, hit: Hit, prefix: str, cited: bool) -> str:
    location = f' · {html.escape(hit.location)}' if hit.location else ""
    mark = ' <span class="cb-cited">cited</span>' if cited else ""
    return (f'<details class="cb-source" id="{anchor(prefix, number)}" open>'
            f'<summary><b>[{number}]</b> <code>{html.escape(hit.source)}</code>{location}'
            f' · score {float(hit.score):.3f}{mark}</summary>'
            f'<pre class="cb-passage">{html.escape(hit.text)}</pre></details>')


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
"""

# Citation links point at "#src-...": open the passage and scroll to it inside the page, even
# where the markdown renderer marks links to open elsewhere.
HEAD = """<script>
document.addEventListener("click", (event) => {
  const link = event.target.closest && event.target.closest("a[href*='#src-']");
  if (!link) return;
  const id = link.getAttribute("href").split("#").pop();
  const target = document.getElementById(id);
  if (!target) return;
  event.preventDefault();
  event.stopPropagation();
  target.open = true;
  target.scrollIntoView({behavior: "smooth", block: "center"});
  document.querySelectorAll(".cb-source.cb-flash").forEach((e) => e.classList.remove("cb-flash"));
  target.classList.add("cb-flash");
}, true);
</script>
<style>.cb-flash { outline: 2px solid var(--color-accent); }</style>"""
