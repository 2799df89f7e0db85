"""Per-answer metrics for offline evaluation: each is a pure function of one answer, its
references and the passages it was given, returning a number or ``None`` when it does not
apply (no references, no retrieval, an answerable item for abstention...).

    chatbot eval --variants prompt,finetuned --data heldout.jsonl
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

# Words that carry no claim: an answer's "content" is what is left (used by groundedness and
# citation checks, not by F1, which follows SQuAD exactly).
STOPWORDS = frozenset("""a an the and or but if then so of to in on at by for with from as is are
was were be been being it its this that these those there here i you he she we they me him her us
them my your his our their do does did can could will would shall should may might must not no
yes have has had what which who whom when where why how than too very also just about into over
under up down out only any all each some such own same other more most""".split())

ABSTAIN_PATTERNS = re.compile(
    r"\b(i don'?t know|i do not know|do not cover|don'?t cover|not (enough|sufficient) "
    r"information|cannot (answer|find)|can'?t (answer|find)|no information|not mentioned|"
    r"unable to answer|not (stated|specified) in the (documents|sources))\b", re.IGNORECASE)

CITATION = re.compile(r"\[(\d+)\]")


@dataclass(frozen=True)
class MetricSpec:
    name: str
    higher_is_better: bool | None
    """``None`` for descriptive metrics (length) that have no better direction."""
    description: str
    value_range: tuple[float, float] | None = (0.0, 1.0)
    """Smallest and largest value (a count or a time: 0 to infinity). Bounds the interval of
    equal values and equal differences (``paired_stats.equal_values_interval``)."""


METRICS = [
    MetricSpec("token_f1", True, "token F1 vs the best reference (SQuAD normalization)"),
    MetricSpec("exact_match", True, "normalized answer equals a reference"),
    MetricSpec("token_recall", True,
               "share of the best reference's tokens in the answer (fair to long answers)"),
    MetricSpec("rouge_l", True, "ROUGE-L F-measure vs the best reference"),
    MetricSpec("semantic", True, "embedder cosine to the closest reference",
               (-1.0, 1.0)),
    MetricSpec("groundedness", True, "share of answer content words found in the passages"),
    MetricSpec("citation_valid", True,
               "share of [n] citations that exist and support their sentence"),
    MetricSpec("abstention", True, "abstained on a not-answerable item"),
    MetricSpec("hit_at_k", True, "a gold source is among the retrieved passages"),
    MetricSpec("evidence_recall", True, "share of gold evidence texts found in the passages"),
    MetricSpec("length", None, "answer length in words", (0.0, math.inf)),
    MetricSpec("latency_ms", False, "time to the complete answer", (0.0, math.inf)),
]
BY_NAME = {spec.name: spec for spec in METRICS}


def normalize_answer(text: str) -> str:
    """SQuAD normalization: lower case, no punctuation, no articles, single spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def _tokens(text: str) -> list[str]:
    return normalize_answer(text).split()


def _f1(prediction: str, reference: str) -> float:
    pred, ref = _tokens(prediction), _tokens(reference)
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def token_f1(prediction: str, references: Sequence[str]) -> float | None:
    return max((_f1(prediction, r) for r in references), default=None)


def token_recall(prediction: str, references: Sequence[str]) -> float | None:
    """Share of a reference's tokens found in the answer: "Yes, you can ..." recalls "yes"."""
    def recall(reference: str) -> float:
        ref = _tokens(reference)
        common = sum((Counter(_tokens(prediction)) & Counter(ref)).values())
        return common / len(ref) if ref else 0.0

    return max((recall(r) for r in references), default=None)


def exact_match(prediction: str, references: Sequence[str]) -> float | None:
    if not references:
        return None
    return float(any(normalize_answer(prediction) == normalize_answer(r) for r in references))


def rouge_l(prediction: str, references: Sequence[str]) -> float | None:
    if not references:
        return None
    from rouge_score.rouge_scorer import RougeScorer

    scorer = RougeScorer(["rougeL"], use_stemmer=False)
    return max(scorer.score(r, prediction)["rougeL"].fmeasure for r in references)


def semantic_similarity(prediction: str, references: Sequence[str],
                        encode: Callable[[list[str]], object] | None) -> float | None:
    """Cosine between the answer and its closest reference (vectors are L2-normalized)."""
    if not references or encode is None or not prediction.strip():
        return None if not references or encode is None else 0.0
    vectors = encode([prediction, *references])
    return float(max(vectors[0] @ vectors[i] for i in range(1, len(references) + 1)))


def content_words(text: str) -> list[str]:
    return [t for t in _tokens(text) if t not in STOPWORDS]


def groundedness(prediction: str, passages: Sequence[str]) -> float | None:
    """Share of the answer's content words that occur in the retrieved passages."""
    if not passages:
        return None
    words = content_words(CITATION.sub(" ", prediction))
    if not words:
        return None
    vocabulary = set(_tokens(" ".join(passages)))
    return sum(w in vocabulary for w in words) / len(words)


def citation_validity(prediction: str, passages: Sequence[str], support: float = 0.5
                      ) -> float | None:
    """Share of citations ``[n]`` that name an existing passage holding at least ``support`` of
    the content words of the sentence they sit in; ``None`` when nothing is cited."""
    checks = []
    for sentence in re.split(r"(?<=[.!?])\s+|\n+", prediction):
        cited = [int(n) for n in CITATION.findall(sentence)]
        words = content_words(CITATION.sub(" ", sentence))
        for n in cited:
            if not 1 <= n <= len(passages):
                checks.append(False)
                continue
            vocabulary = set(_tokens(passages[n - 1]))
            share = sum(w in vocabulary for w in words) / len(words) if words else 1.0
            checks.append(share >= support)
    return sum(checks) / len(checks) if checks else None


def abstained(prediction: str, refused: bool = False) -> bool:
    return refused or bool(ABSTAIN_PATTERNS.search(prediction))


def abstention(prediction: str, not_answerable: bool, refused: bool = False) -> float | None:
    """1 when a not-answerable item was declined; ``None`` on answerable items."""
    return float(abstained(prediction, refused)) if not_answerable else None


def hit_at_k(hits: Sequence[dict], gold_ids: Sequence[str], retrieval: bool) -> float | None:
    """1 when a retrieved passage is one of ``gold_ids`` (matched on chunk id, source, the
    source's file name with or without extension, or a relative path the source ends with),
    as ``chatbot index eval`` matches a gold source."""
    if not gold_ids or not retrieval:
        return None
    gold = set(gold_ids)
    paths = tuple("/" + g.removeprefix("./") for g in gold)
    return float(any(_hit_names(h) & gold or str(h.get("source", "")).endswith(paths)
                     for h in hits))


def _hit_names(hit: dict) -> set[str]:
    source = str(hit.get("source", ""))
    stem = source.rsplit("/", 1)[-1].split("#", 1)[0].rsplit(".", 1)[0]
    return {str(hit.get("chunk_id")), source, stem}


def evidence_recall(hits: Sequence[dict], gold_texts: Sequence[str], retrieval: bool
                    ) -> float | None:
    """Share of gold evidence texts that appear (normalized) inside a retrieved passage."""
    if not gold_texts or not retrieval:
        return None
    passages = [normalize_answer(h.get("text", "")) for h in hits]
    found = [any(normalize_answer(g) in p for p in passages) for g in gold_texts]
    return sum(found) / len(found)


def score_answer(text: str, *, references: Sequence[str], hits: Sequence[dict],
                 retrieval: bool, not_answerable: bool, gold_ids: Sequence[str],
                 gold_texts: Sequence[str], latency_ms: float | None, refused: bool = False,
                 encode: Callable | None = None) -> dict[str, float | None]:
    """Every metric of one answer; keys are the names in :data:`METRICS`."""
    passages = [h.get("text", "") for h in hits]
    answerable_refs = [] if not_answerable else list(references)
    return {
        "token_f1": token_f1(text, answerable_refs),
        "exact_match": exact_match(text, answerable_refs),
        "token_recall": token_recall(text, answerable_refs),
        "rouge_l": rouge_l(text, answerable_refs),
        "semantic": semantic_similarity(text, answerable_refs, encode),
        "groundedness": groundedness(text, passages) if retrieval else None,
        "citation_valid": citation_validity(text, passages) if retrieval else None,
        "abstention": abstention(text, not_answerable, refused),
        "hit_at_k": hit_at_k(hits, gold_ids, retrieval),
        "evidence_recall": evidence_recall(hits, gold_texts, retrieval),
        "length": float(len(text.split())),
        "latency_ms": latency_ms,
    }
