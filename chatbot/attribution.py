"""Per-sentence attribution: which sentences of the passages back each sentence of an answer.

Small models invent text even with the evidence in their prompt, and many cite nothing, so the
answer's own ``[n]`` can't be trusted or may be missing. After an answer ends, each of its
sentences is scored against every sentence of the passages the model was given:

    score = COSINE_WEIGHT * embedder cosine + (1 - COSINE_WEIGHT) * recall of its content words

and a source sentence that lacks a number the answer states scores at most half (embedders
barely see digits). A sentence is supported by the best sentence of each passage scoring at
least the threshold. Without a meaningful embedder (none, or the hash stand-in) the score is the
lexical recall alone, with its own threshold. The weights and thresholds were chosen by
measurement on a labelled set (benchmarks/data/attribution_labels.json):

    python benchmarks/bench_attribution.py
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from index.sentences import CITATION, content_words, numbers, sentence_spans
from index.embed import Embedder

COSINE_WEIGHT = 0.25
SENTENCE_THRESHOLD = 0.6
"""Measured with all-MiniLM-L6-v2 (100 labelled sentences: precision 0.84, recall 0.90; chosen
on one half, measured on the other 0.86/0.85); measure again for another embedder."""
LEXICAL_THRESHOLD = 0.61
"""Lexical recall alone on the same set: precision 0.84, recall 0.88 at this threshold."""
NUMBER_PENALTY = 0.5
MIN_CLAIM_WORDS = 3
"""Sentences with fewer content words ("Sure!", "I hope this helps.") state nothing to check."""
FRAMING = re.compile(r"^(?:based on|according to|as (?:stated|described|mentioned|shown) in)\s+"
                     r"(?:the\s+)?(?:provided\s+|given\s+)?(?:documentation|documents?|docs|"
                     r"sources?|context|passages?|information)(?:\s+provided)?\s*[,:]\s*",
                     re.IGNORECASE)
"""An opening that says where a claim comes from ("Based on the documentation, ..."): its
words are not part of the claim, and no passage holds them."""
POLICIES = ("show", "flag", "withhold")
WITHHELD_MESSAGE = ("I held this answer back: too little of it is supported by the documents. "
                    "Try rephrasing the question, or check the sources directly.")


@dataclass(frozen=True)
class Support:
    """A source sentence that backs an answer sentence."""

    source: int
    """The passage's number [n], 1-based, as in the prompt and the sources panel."""
    start: int
    end: int
    """Character span of the sentence in the passage's text."""
    score: float

    def as_dict(self) -> dict:
        return {"n": self.source, "start": self.start, "end": self.end,
                "score": round(self.score, 4)}


@dataclass(frozen=True)
class SentenceSupport:
    start: int
    end: int
    """Character span of the sentence in the answer's text."""
    score: float
    """Its best score against any source sentence (0 with no passages)."""
    claim: bool
    """False for sentences too short to state anything (they count neither way)."""
    sources: tuple[Support, ...] = ()
    """The best sentence of each passage that backs it, best first; empty: unsupported."""

    @property
    def supported(self) -> bool:
        return bool(self.sources)

    def as_dict(self) -> dict:
        return {"start": self.start, "end": self.end, "score": round(self.score, 4),
                "claim": self.claim, "supported": self.supported,
                "sources": [support.as_dict() for support in self.sources]}


@dataclass(frozen=True)
class Attribution:
    """An answer's sentences with their support, and what the policy did with the answer."""

    sentences: tuple[SentenceSupport, ...]
    score: float
    """Share of the claims' characters that are supported (1.0 when nothing is claimed)."""
    action: str
    """``shown``, ``flagged`` (shown with a notice) or ``withheld`` (replaced by a message)."""
    method: str
    """``embedding+lexical``, or ``lexical`` without a meaningful embedder."""
    withheld_text: str | None = None
    """The answer as generated, when withheld: logged, never shown."""
    ms: float = 0.0
    """What computing it cost, after the answer was generated."""

    def as_dict(self, public: bool = False) -> dict:
        """Plain data: everything for the log; ``public`` (API, UI) leaves a withheld
        answer's text and spans out."""
        withheld = public and self.action == "withheld"
        record = {"score": round(self.score, 4), "action": self.action, "method": self.method,
                  "ms": self.ms,
                  "sentences": [] if withheld else [s.as_dict() for s in self.sentences]}
        if self.action == "flagged":
            record["notice"] = flag_notice(self.score)
        if not public:
            record["withheld_text"] = self.withheld_text
        return record


@dataclass(frozen=True)
class AttributionSettings:
    policy: str = "show"
    """What to do with an answer whose score is below ``min_support``: ``show`` it (its
    unsupported sentences marked), ``flag`` it with a notice, or ``withhold`` it."""
    min_support: float = 0.5
    sentence_threshold: float | None = None
    """Score from which a source sentence backs an answer sentence; ``None``: the measured
    default of the method (``SENTENCE_THRESHOLD``, or ``LEXICAL_THRESHOLD`` without embedder)."""
    withheld_message: str = WITHHELD_MESSAGE


def flag_notice(score: float) -> str:
    return (f"Only {score:.0%} of this answer is supported by the sources shown; "
            "check the marked sentences before relying on it.")


class Attributor:
    """Scores answers against their passages with the index's embedder (``None``: lexical)."""

    def __init__(self, embedder: Embedder | None,
                 settings: AttributionSettings = AttributionSettings(),
                 cosine_weight: float = COSINE_WEIGHT) -> None:
        self.embedder, self.settings, self.cosine_weight = embedder, settings, cosine_weight
        default = SENTENCE_THRESHOLD if embedder is not None else LEXICAL_THRESHOLD
        self.threshold = (default if settings.sentence_threshold is None
                          else settings.sentence_threshold)

    @property
    def method(self) -> str:
        return "lexical" if self.embedder is None else "embedding+lexical"

    @property
    def holds_answers(self) -> bool:
        """Whether an answer must wait for its attribution before anyone sees it."""
        return self.settings.policy == "withhold"

    def judge(self, text: str, passages: Sequence[str]) -> tuple[Attribution, str]:
        """The answer's attribution and the text to show: the answer, or the withheld
        message when the policy holds it back."""
        attribution = self(text, passages)
        withheld = attribution.action == "withheld"
        return attribution, self.settings.withheld_message if withheld else text

    def __call__(self, text: str, passages: Sequence[str]) -> Attribution:
        started = time.perf_counter()
        spans = sentence_spans(text)
        claims = [len(content_words(text[a:b])) >= MIN_CLAIM_WORDS for a, b in spans]
        units = [(n, a, b) for n, passage in enumerate(passages, start=1)
                 for a, b in sentence_spans(passage)]
        checked = [span for span, claim in zip(spans, claims) if claim]
        scores = self.scores([text[a:b] for a, b in checked],
                             [passages[n - 1][a:b] for n, a, b in units])
        rows = dict(zip(checked, scores))
        sentences = tuple(self._sentence(span, claim, rows.get(span), units)
                          for span, claim in zip(spans, claims))
        score = _share_supported(sentences)
        action = self._action(score)
        return Attribution(sentences, score, action, self.method,
                           text if action == "withheld" else None,
                           round((time.perf_counter() - started) * 1000, 1))

    def scores(self, claims: list[str], units: list[str], exact: bool = False) -> np.ndarray:
        """``claims x units`` support scores (the measured formula of the module docstring).

        Only sentences whose word overlap could reach the threshold with a perfect cosine are
        embedded (the embedder is most of the cost); other pairs score their lexical part
        alone, which changes no decision. ``exact`` embeds every pair (the benchmark)."""
        if not claims or not units:
            return np.zeros((len(claims), len(units)), dtype=np.float32)
        claims = [FRAMING.sub("", claim, count=1) for claim in claims]
        claim_words = [content_words(claim) for claim in claims]
        unit_words = [_with_port_numbers(content_words(unit)) for unit in units]
        lexical = np.array([[len(c & u) / max(1, len(c)) for u in unit_words]
                            for c in claim_words], dtype=np.float32)
        scores = lexical
        if self.embedder is not None:
            weight = self.cosine_weight
            reachable = exact | (lexical >= (self.threshold - weight) / max(1e-9, 1 - weight))
            rows, cols = np.flatnonzero(reachable.any(1)), np.flatnonzero(reachable.any(0))
            scores = (1 - weight) * lexical
            if len(rows):
                vectors = self.embedder.encode([CITATION.sub("", claims[i]) for i in rows]
                                               + [units[j] for j in cols])
                cosine = vectors[:len(rows)] @ vectors[len(rows):].T
                scores[np.ix_(rows, cols)] += weight * cosine
        lacking = np.array([[not numbers(c) <= u for u in unit_words] for c in claim_words])
        return np.where(lacking, scores * NUMBER_PENALTY, scores)

    def _sentence(self, span: tuple[int, int], claim: bool, row: np.ndarray | None,
                  units: list[tuple[int, int, int]]) -> SentenceSupport:
        if row is None or not len(row):
            return SentenceSupport(*span, 0.0, claim)
        best: dict[int, Support] = {}
        for (n, a, b), score in zip(units, row.tolist()):
            if score >= self.threshold and (n not in best or score > best[n].score):
                best[n] = Support(n, a, b, score)
        ranked = tuple(sorted(best.values(), key=lambda s: -s.score))
        return SentenceSupport(*span, float(row.max()), claim, ranked)

    def _action(self, score: float) -> str:
        if score >= self.settings.min_support or self.settings.policy == "show":
            return "shown"
        return "flagged" if self.settings.policy == "flag" else "withheld"


def _with_port_numbers(words: set[str]) -> set[str]:
    """``words`` and the parts of each number written with a colon: a source's
    ``127.0.0.1:7860`` backs an answer's "port 7860"."""
    return words | {part for word in words if word[0].isdigit() and ":" in word
                    for part in word.split(":")}


def _share_supported(sentences: Sequence[SentenceSupport]) -> float:
    claimed = [s for s in sentences if s.claim]
    total = sum(s.end - s.start for s in claimed)
    if not total:
        return 1.0
    return sum(s.end - s.start for s in claimed if s.supported) / total
