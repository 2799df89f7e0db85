"""Attribution quality and cost: is a supported sentence told from an unsupported one?

    python benchmarks/bench_attribution.py

``benchmarks/data/attribution_labels.json`` holds answer sentences written for this benchmark
against passages of ``docs/``, each labelled supported or not: verbatim and paraphrased claims,
and unsupported ones of four kinds (a number changed, a detail swapped or negated, an invented
claim, a true claim with an invented one). Each sentence is scored against the sentences of its
passage as ``chatbot.attribution`` does, for several cosine weights (all-MiniLM-L6-v2, the
embedded embedder) and lexical recall alone. For each it prints the best threshold over the
whole set, a two-fold estimate (threshold chosen on one half, measured on the other) and the
result at the shipped threshold; the shipped scoring once more with every passage's sentences
as candidates (a sentence of another passage can back a claim by accident); then the cost per
answer (five sentences, four passages).
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from chatbot.attribution import (COSINE_WEIGHT, LEXICAL_THRESHOLD,  # noqa: E402
                                 SENTENCE_THRESHOLD, Attributor)
from index.sentences import sentence_spans  # noqa: E402

LABELLED = Path(__file__).parent / "data" / "attribution_labels.json"
THRESHOLDS = np.round(np.arange(0.20, 0.951, 0.01), 2)
WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
ANSWER = ("To index your documents, run `chatbot index sync` with the folders that hold them. "
          "Only chunks whose text changed are embedded again. By default a chunk is 500 tokens "
          "long. The default search mode is hybrid, which merges both rankings. Sure, I hope "
          "this helps! The sync also watches your folders for changes.")


def main() -> None:
    data = json.loads(LABELLED.read_text(encoding="utf-8"))
    items, passages = data["items"], data["passages"]
    labels = np.array([item["supported"] for item in items])
    embedder = _minilm()
    print(f"{len(items)} labelled sentences ({labels.sum()} supported) from {LABELLED.name}\n")
    print(f"{'method':<24}{'best t':>7}{'F1':>6}{'2-fold P/R/F1':>18}{'shipped t':>11}"
          f"{'P':>6}{'R':>6}{'F1':>6}")
    for weight in WEIGHTS:
        scores = item_scores(Attributor(embedder, cosine_weight=weight), items, passages)
        shipped = SENTENCE_THRESHOLD if weight == COSINE_WEIGHT else None
        report(f"cosine weight {weight}", scores, labels, shipped)
    lexical = item_scores(Attributor(None), items, passages)
    report("lexical only", lexical, labels, LEXICAL_THRESHOLD)
    shipped = item_scores(Attributor(embedder), items, passages)
    every = item_scores(Attributor(embedder), items, passages, against_all=True)
    precision, recall, f1 = prf(every >= SENTENCE_THRESHOLD, labels)
    print(f"\nagainst the sentences of all {len(passages)} passages, not just its own (an answer "
          f"is checked against all of its passages), at the shipped t: P {precision:.2f}, "
          f"R {recall:.2f}, F1 {f1:.2f}\n")
    print_kinds(items, shipped >= SENTENCE_THRESHOLD, lexical >= LEXICAL_THRESHOLD)
    print_cost(embedder, passages)


def item_scores(attributor: Attributor, items: list[dict], passages: dict,
                against_all: bool = False) -> np.ndarray:
    """Each sentence's best score against the sentences of its passage (``against_all``: of
    every passage, where a sentence of another can back a claim by accident)."""
    units = {name: [text[a:b] for a, b in sentence_spans(text)] for name, text in passages.items()}
    everything = [unit for found in units.values() for unit in found]
    return np.array([float(attributor.scores(
        [item["sentence"]], everything if against_all else units[item["passage"]],
        exact=True).max()) for item in items])


def prf(predicted: np.ndarray, labels: np.ndarray) -> tuple[float, float, float]:
    hits = float((predicted & labels).sum())
    precision = hits / max(1, predicted.sum())
    recall = hits / max(1, labels.sum())
    return precision, recall, 2 * precision * recall / max(1e-9, precision + recall)


def best_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    f1 = [prf(scores >= t, labels)[2] for t in THRESHOLDS]
    return float(THRESHOLDS[int(np.argmax(f1))])


def two_fold(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float, float]:
    """Threshold chosen on even items and measured on odd ones, and the other way round."""
    even, odd = np.arange(len(scores)) % 2 == 0, np.arange(len(scores)) % 2 == 1
    predicted = np.zeros(len(scores), dtype=bool)
    for fit, test in ((even, odd), (odd, even)):
        predicted[test] = scores[test] >= best_threshold(scores[fit], labels[fit])
    return prf(predicted, labels)


def report(name: str, scores: np.ndarray, labels: np.ndarray, shipped: float | None) -> None:
    best = best_threshold(scores, labels)
    folds = "/".join(f"{v:.2f}" for v in two_fold(scores, labels))
    line = f"{name:<24}{best:>7.2f}{prf(scores >= best, labels)[2]:>6.2f}{folds:>18}"
    if shipped is not None:
        p, r, f = prf(scores >= shipped, labels)
        line += f"{shipped:>11.2f}{p:>6.2f}{r:>6.2f}{f:>6.2f}"
    print(line)


def print_kinds(items: list[dict], combined: np.ndarray, lexical: np.ndarray) -> None:
    """Share of each kind judged right at the shipped thresholds."""
    right: dict[str, list[tuple[bool, bool]]] = defaultdict(list)
    for item, a, b in zip(items, combined, lexical):
        right[item["kind"]].append((a == item["supported"], b == item["supported"]))
    print(f"\n{'kind (right at shipped t)':<28}{'n':>4}{'combined':>10}{'lexical':>9}")
    for kind, pairs in sorted(right.items()):
        print(f"{kind:<28}{len(pairs):>4}{sum(a for a, _ in pairs) / len(pairs):>10.2f}"
              f"{sum(b for _, b in pairs) / len(pairs):>9.2f}")


def print_cost(embedder, passages: dict) -> None:
    """Milliseconds per answer, after the answer: the time its reply and log wait."""
    chosen = [passages[name] for name in ("sync", "incremental", "chunking", "modes")]
    print(f"\ncost per answer ({len(sentence_spans(ANSWER))} sentences, 4 passages of "
          f"{sum(len(sentence_spans(p)) for p in chosen)} sentences), median of 20:")
    combined = Attributor(embedder)
    sentences = [ANSWER[a:b] for a, b in sentence_spans(ANSWER)]
    units = [p[a:b] for p in chosen for a, b in sentence_spans(p)]
    runs = [("embedding+lexical", lambda: combined(ANSWER, chosen)),
            ("  every pair embedded", lambda: combined.scores(sentences, units, exact=True)),
            ("lexical", lambda: Attributor(None)(ANSWER, chosen))]
    if embedder.runtime_in_use == "onnx":  # the runtime's baseline: the same on torch
        on_torch = Attributor(_minilm("torch"))
        runs.insert(1, ("  the embedder on torch", lambda: on_torch(ANSWER, chosen)))
    for name, attribute in runs:
        attribute()  # warm up
        times = []
        for _ in range(20):
            started = time.perf_counter()
            attribute()
            times.append((time.perf_counter() - started) * 1000)
        print(f"  {name:<24}{statistics.median(times):8.1f} ms")


def _minilm(runtime: str = "auto"):
    """The embedded embedder as the bot runs it (the default config's precision and runtime)."""
    from dataclasses import replace

    from app.build import embedder_spec
    from chatbot.config import BotConfig
    from chatbot.indexing import open_embedder

    return open_embedder(replace(embedder_spec(BotConfig()), runtime=runtime))


if __name__ == "__main__":
    main()
