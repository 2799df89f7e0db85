"""Sentences and content words of answers and passages: for attribution (``chatbot.attribution``)
and for the sentence vectors a chunk is also ranked by (``index/sentence_vectors.py``).

Spans are character offsets into the text as given, so the web UI and the API can point at
exactly the words a model wrote and a passage holds. Markdown is respected the simple way:
paragraphs (hard-wrapped lines joined), list items, headings and table rows are split on their
own, list and heading markers are left out of the span, and code, fenced or indented, is
skipped (code is not a claim to check). A sentence may start with a capital of any script, or
follow a full-width stop (。); Chinese and Japanese words are read as character pairs.

    >>> sentence_spans("Run it. Then stop.")
    [(0, 7), (8, 18)]
"""

from __future__ import annotations

import re

from markdown_it import MarkdownIt

CITATION = re.compile(r"\[\d{1,3}(?:\s*,\s*\d{1,3})*\]")
_FENCE = re.compile(r"\s*(```|~~~)")
# A line indented 4 spaces after a blank one may open an indented code block; only then is the
# text parsed as Markdown to tell code from an indented list item.
_MAY_HOLD_INDENTED_CODE = re.compile(r"(?:\A|\n[ \t]*\n)(?: {4}|\t)\S")
_MARKDOWN = MarkdownIt("commonmark").enable("table")
_MARKER = re.compile(r"\s*(?:[-*+]|\d{1,3}[.)]|#{1,6}|>)\s+")
# A sentence ends at . ! ? and a space before what may start one (``_starts_sentence`` says
# whether it does), or at a full-width 。！？, which needs no space after it.
_BOUNDARY = re.compile(r"(?<=[.!?])[\"')\]’”»]*\s+(?=\S)|(?<=[。！？])[」』）]*\s*(?=\S)")
_OPENING = "\"'([`*_‘“«「『（"
_ABBREVIATIONS = ("e.g.", "i.e.", "etc.", "vs.", "cf.")
_TOKEN = re.compile(r"\d+(?:[.,:]\d+)*|[^\W\d_]+")
# Chinese and Japanese write no spaces between words: a run of their characters is read as its
# character pairs, the usual unit of keyword matching for them.
_CJK_RUN = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
_STOPWORDS = frozenset("""
a about above after again all also am an and any are as at be because been before being both
but by can could did do does doing done each either for from further had has have having he her
here hers him his how i if in into is it its itself just let may me might more most much must my
no nor not of off on once only or other our ours out over own same shall she should so some such
than that the their theirs them then there these they this those through to too under until up
upon us very was we were what when where which while who whom why will with would yes you your
yours sure hope helps help please thanks thank
""".split())


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` of each sentence of ``text``, in order, whitespace and markers excluded."""
    spans: list[tuple[int, int]] = []
    for begin, end in _blocks(text):
        spans += _pieces(text, begin, end)
    return spans


def _blocks(text: str) -> list[tuple[int, int]]:
    """Paragraphs, list items, headings and table rows as ``(body start, end)``: a hard-wrapped
    line continues its paragraph, so documents' sentences are not cut at line ends."""
    blocks: list[list[int]] = []
    offset, in_fence, joinable = 0, False, False
    code = block_lines(text, {"code_block"}) if _MAY_HOLD_INDENTED_CODE.search(text) else set()
    for number, line in enumerate(text.splitlines(keepends=True)):
        start, offset = offset, offset + len(line)
        if _FENCE.match(line):
            in_fence, joinable = not in_fence, False
        elif in_fence or number in code or not line.strip():
            joinable = False
        elif (marker := _MARKER.match(line)) or line.lstrip().startswith("|") or not joinable:
            blocks.append([start + (marker.end() if marker else 0), offset])
            joinable = not line.lstrip().startswith(("#", "|"))
        else:
            blocks[-1][1] = offset
    return [(begin, end) for begin, end in blocks]


def block_lines(text: str, kinds: set[str]) -> set[int]:
    """Numbers of the lines of ``text`` inside Markdown blocks of ``kinds`` (markdown-it's
    token types: ``code_block``, ``fence``, ``html_block``, ``table_open``)."""
    return {line for token in _MARKDOWN.parse(text)
            if token.type in kinds and token.map for line in range(*token.map)}


def _pieces(text: str, begin: int, end: int) -> list[tuple[int, int]]:
    cuts = [m for m in _BOUNDARY.finditer(text, begin, end)
            if not text[begin:m.start()].lower().endswith(_ABBREVIATIONS)
            and _starts_sentence(text[m.end():end])]
    bounds = [begin] + [i for m in cuts for i in (m.start(), m.end())] + [end]
    pieces = []
    for start, stop in zip(bounds[::2], bounds[1::2]):
        while start < stop and text[start].isspace():
            start += 1
        while stop > start and text[stop - 1].isspace():
            stop -= 1
        if any(c.isalnum() for c in text[start:stop]):
            pieces.append((start, stop))
    return pieces


def _starts_sentence(rest: str) -> bool:
    """Whether text after a full stop and a space starts a sentence: its first letter or
    digit is not a lower-case letter (a capital in any script, a digit, or a script without
    case such as Chinese)."""
    first = rest.lstrip(_OPENING)[:1]
    return bool(first) and (first.isdigit() or (first.isalpha() and not first.islower()))


def content_words(text: str) -> set[str]:
    """Lower-cased, crudely stemmed words that carry meaning (no stopwords, no citations), so
    ``indexes`` meets ``indexing`` and ``files`` meets ``file``; numbers are kept whole."""
    words = set()
    for token in _tokens(CITATION.sub(" ", text).lower()):
        if token[0].isdigit():
            words.add(token.replace(",", ""))
        elif token not in _STOPWORDS and len(token) > 1:
            words.add(_stem(token))
    return words


def _tokens(text: str) -> list[str]:
    tokens = []
    for token in _TOKEN.findall(text):
        runs = _CJK_RUN.findall(token)
        if not runs:
            tokens.append(token)
            continue
        tokens += [part for part in _CJK_RUN.split(token) if part]
        tokens += [pair for run in runs for pair in
                   ([run[i:i + 2] for i in range(len(run) - 1)] or [run])]
    return tokens


def numbers(words: set[str]) -> set[str]:
    """The numbers among ``content_words``: a source that lacks one cannot back the claim."""
    return {word for word in words if word[0].isdigit()}


def _stem(word: str) -> str:
    if word.endswith("ies") and len(word) > 4:
        word = word[:-3] + "y"
    elif word.endswith("s") and not word.endswith("ss") and len(word) > 3:
        word = word[:-1]
    for suffix in ("ing", "ed"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[:-len(suffix)]
            break
    return word[:-1] if word.endswith("e") and len(word) > 3 else word
