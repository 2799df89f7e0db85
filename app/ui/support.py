"""Attribution on the page (plain functions, no gradio): the answer with an [n] after each
supported sentence, linked to the sentence that backs it, highlighted in the sources panel;
unsupported sentences marked; a notice on a flagged answer.

A link's target is ``{prefix}-{n}-s{start}``: the sentence of passage ``n`` that starts at
character ``start``, inside the panel entry ``{prefix}-{n}`` that ``render.sources_html`` draws.
The model's text is kept as written (Markdown), only wrapped: the page renders and sanitizes it
as before. Sentences in code, tables and raw HTML are left unmarked: a tag there would show as
text or break the table.
"""

from __future__ import annotations

import bisect
import html
import re
from collections.abc import Sequence

from chatbot.attribution import Attribution, Support, flag_notice
from index.sentences import block_lines

MAX_LINKS = 2
"""Passages named after one sentence: the best two are enough to check it."""
UNSUPPORTED_TITLE = "No source passage supports this sentence"
_VERBATIM_BLOCKS = {"fence", "code_block", "html_block", "table_open"}


def sentence_anchor(prefix: str, number: int, start: int) -> str:
    return f"{prefix}-{number}-s{start}"


def answer_markup(text: str, attribution: Attribution | None, prefix: str) -> str:
    """The answer as the chat shows it once attributed; ``text`` itself without attribution
    or when withheld (then ``text`` is the withheld message)."""
    if attribution is None or attribution.action == "withheld":
        return text
    parts, last = [], 0
    verbatim = block_lines(text, _VERBATIM_BLOCKS)  # the page shows them as code or a table
    line_starts = [0] + [m.end() for m in re.finditer("\n", text)]
    for sentence in attribution.sentences:
        body = text[sentence.start:sentence.end]
        parts.append(text[last:sentence.start])
        lines = range(bisect.bisect_right(line_starts, sentence.start) - 1,
                      bisect.bisect_right(line_starts, max(sentence.end - 1, sentence.start)))
        if verbatim.intersection(lines):
            parts.append(body)
        elif sentence.supported:
            links = [_link(prefix, s) for s in sentence.sources[:MAX_LINKS]
                     if f"[{s.source}]" not in body]  # the model's own [n] is linked already
            parts.append(body + "".join(links))
        elif sentence.claim:
            parts.append(f'<span class="cb-unsupported" title="{UNSUPPORTED_TITLE}">{body}</span>')
        else:
            parts.append(body)
        last = sentence.end
    parts.append(text[last:])
    notice = (f'<div class="cb-flag">{html.escape(flag_notice(attribution.score))}</div>\n\n'
              if attribution.action == "flagged" else "")
    return notice + "".join(parts)


_NOTICE = re.compile(r'^<div class="cb-flag">.*?</div>\n\n', re.DOTALL)
_LINK = re.compile(r' <a class="cb-cite cb-support-link" [^>]*>\[\d+\]</a>')
_UNSUPPORTED = re.compile(r'<span class="cb-unsupported" title="[^"]*">(.*?)</span>', re.DOTALL)


def plain_answer(markup: str) -> str:
    """``answer_markup`` undone: the text without the notice, links and marks it added (what a
    person edits in the chat is the shown markup; the correction is saved as plain text)."""
    return _UNSUPPORTED.sub(r"\1", _LINK.sub("", _NOTICE.sub("", markup)))


def _link(prefix: str, support: Support) -> str:
    return (f' <a class="cb-cite cb-support-link" '
            f'href="#{sentence_anchor(prefix, support.source, support.start)}" '
            f'title="backed by passage [{support.source}] (score {support.score:.2f})">'
            f'[{support.source}]</a>')


def supporting_spans(attribution: Attribution | None) -> dict[int, list[tuple[int, int]]]:
    """Passage number -> the spans of its sentences that back the answer, in order."""
    if attribution is None or attribution.action == "withheld":
        return {}
    spans: dict[int, set[tuple[int, int]]] = {}
    for sentence in attribution.sentences:
        for support in sentence.sources[:MAX_LINKS]:
            spans.setdefault(support.source, set()).add((support.start, support.end))
    return {n: sorted(found) for n, found in spans.items()}


def highlighted(text: str, spans: Sequence[tuple[int, int]], prefix: str, number: int) -> str:
    """A passage, escaped, its supporting sentences in ``<mark>`` with their anchors."""
    parts, last = [], 0
    for start, end in spans:
        parts += [html.escape(text[last:start]),
                  f'<mark class="cb-support" id="{sentence_anchor(prefix, number, start)}">'
                  f'{html.escape(text[start:end])}</mark>']
        last = end
    return "".join(parts) + html.escape(text[last:])


def support_line(attribution: Attribution | None) -> str:
    """The legend under the sources heading: the score, and what the marks mean."""
    if attribution is None:
        return ""
    if attribution.action == "withheld":
        return (f'<div class="cb-meta">answer withheld: {attribution.score:.0%} of it was '
                'supported by the sources</div>')
    return (f'<div class="cb-meta cb-legend">{attribution.score:.0%} supported · [n] after a '
            'sentence links to the <mark class="cb-support">highlighted</mark> sentence that '
            f'backs it · <span class="cb-unsupported">underlined</span>: no passage supports it'
            f' ({html.escape(attribution.method)})</div>')

