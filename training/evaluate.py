"""Offline A/B of variants on held-out data: answers through the engine, per-item metrics, paired
comparisons against the first (baseline) variant, reports, and a promotion gate.

    chatbot eval --variants prompt,finetuned --data heldout.jsonl --gate "token_f1>=0"

From Python (``chatbot train --eval-gate`` calls this after training)::

    result = run_gate(config, ["prompt", "my-adapter"], "heldout.jsonl", "token_f1>=0")
    result.passed
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from chatbot.config import BotConfig, LoggingConfig
from chatbot.engine import Engine
from chatbot.errors import InputError
from chatbot.variants import Variant
from training.evalset import EvalItem, load_items
from training.generations import CACHE_FILE, GenerationCache, GenerationRun, generate_all
from training.metrics import BY_NAME, METRICS, score_answer
from training.stats import Interval, PairedComparison, bootstrap_mean, compare_paired

GATE = re.compile(r"^\s*([a-z_@0-9]+)\s*(>=|<=)\s*(-?[0-9.]+)\s*$")


@dataclass(frozen=True)
class Gate:
    metric: str
    op: str
    threshold: float

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.threshold:g}"


@dataclass(frozen=True)
class GateResult:
    gate: Gate
    candidate: str
    baseline: str
    passed: bool
    difference: Interval | None
    message: str


@dataclass
class EvalResult:
    name: str
    data: str
    items: list[EvalItem]
    variants: list[str]
    run: GenerationRun
    scores: dict[str, list[dict]]
    """Per variant, per item (in item order): metric name -> value or None."""
    summaries: dict[str, dict[str, tuple[Interval, int]]]
    comparisons: dict[str, dict[str, PairedComparison]]
    """Per candidate, per metric: candidate vs the baseline (``variants[0]``)."""
    min_effect: float
    out_dir: Path | None = None
    gates: list[GateResult] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def baseline(self) -> str:
        return self.variants[0]

    @property
    def candidates(self) -> list[str]:
        return self.variants[1:]


def parse_gate(text: str) -> Gate:
    match = GATE.match(text)
    if not match or match.group(1) not in BY_NAME:
        raise InputError(f"gate {text!r} is not METRIC>=NUMBER or METRIC<=NUMBER with a metric "
                         f"among {', '.join(BY_NAME)}; e.g. --gate \"token_f1>=0\"")
    return Gate(match.group(1), match.group(2), float(match.group(3)))


def check_gate(result: EvalResult, gate: Gate, candidate: str) -> GateResult:
    """Pass only when the whole 95% interval of candidate - baseline clears the threshold:
    ``>=`` needs the lower bound at or above it, ``<=`` the upper bound at or below it."""
    comparison = result.comparisons.get(candidate, {}).get(gate.metric)
    if comparison is None or comparison.n < 3:
        n = comparison.n if comparison else 0
        return GateResult(gate, candidate, result.baseline, False, None,
                          f"gate {gate}: {n} paired item(s) have {gate.metric}; need at least 3")
    diff = comparison.difference
    bound = diff.low if gate.op == ">=" else diff.high
    passed = bound >= gate.threshold if gate.op == ">=" else bound <= gate.threshold
    verdict = "passed" if passed else "failed"
    side = "lower" if gate.op == ">=" else "upper"
    return GateResult(gate, candidate, result.baseline, passed, diff,
                      f"gate {gate} {verdict}: {candidate} - {result.baseline} = "
                      f"{diff.mean:+.4f} [{diff.low:+.4f}, {diff.high:+.4f}], {side} bound "
                      f"{bound:+.4f} vs {gate.threshold:g} (n={comparison.n})")


def score_run(items: list[EvalItem], run: GenerationRun, encode: Callable | None
              ) -> dict[str, list[dict]]:
    scores = {}
    for name, answers in run.answers.items():
        scores[name] = [score_answer(
            g.text, references=item.references, hits=g.hits, retrieval=g.retrieval,
            not_answerable=item.not_answerable, gold_ids=item.gold_ids,
            gold_texts=item.gold_texts, latency_ms=g.timings.get("total_ms"),
            refused=g.refused, encode=encode) for item, g in zip(items, answers)]
    return scores


def summarize(scores: dict[str, list[dict]]) -> dict[str, dict[str, tuple[Interval, int]]]:
    summaries = {}
    for name, rows in scores.items():
        summaries[name] = {}
        for spec in METRICS:
            values = [r[spec.name] for r in rows if r[spec.name] is not None]
            summaries[name][spec.name] = (bootstrap_mean(values), len(values))
    return summaries


def compare(scores: dict[str, list[dict]], baseline: str, candidates: list[str],
            min_effect: float) -> dict[str, dict[str, PairedComparison]]:
    """Paired comparisons on the items where both variants have the metric."""
    comparisons: dict[str, dict[str, PairedComparison]] = {}
    for candidate in candidates:
        comparisons[candidate] = {}
        for spec in METRICS:
            pairs = [(a[spec.name], b[spec.name])
                     for a, b in zip(scores[baseline], scores[candidate])
                     if a[spec.name] is not None and b[spec.name] is not None]
            if not pairs:
                continue
            base, cand = zip(*pairs)
            effect = None if spec.name in ("length", "latency_ms") else min_effect
            comparisons[candidate][spec.name] = compare_paired(
                base, cand, higher_is_better=spec.higher_is_better is not False,
                min_effect=effect)
    return comparisons


def eval_engine(config: BotConfig, extra_variants: dict[str, Variant] | None = None,
                embedder=None) -> Engine:
    """The users' engine (same retrieval, templates, filters) minus the conversation log:
    eval answers are not conversations to train on."""
    from chatbot.bot import build_engine
    from chatbot.indexing import open_retriever

    quiet = config.model_copy(update={"logging": LoggingConfig(enabled=False)})
    retriever = open_retriever(quiet, embedder)
    search = (lambda query, k: retriever.search(query, k=k)) if retriever else None
    engine = build_engine(quiet, search=search)
    engine.variants.update(extra_variants or {})
    return engine


INDEX_CONTENT_KEYS = ("documents", "embedder", "dimension", "chunk_tokens", "chunk_overlap",
                      "index_type", "faiss_type", "hnsw_m")


def index_state(config: BotConfig) -> str | None:
    """What retrieval answers from: the indexed documents' hashes, the index settings and the
    retrieval settings. Not the manifest's generation or timestamp, so a sync that changed
    nothing keeps the cached answers."""
    path = config.data_path / "index" / "manifest.json"
    if not path.is_file():
        return None
    manifest = json.loads(path.read_text())
    content = {key: manifest.get(key) for key in INDEX_CONTENT_KEYS}
    content["retrieval"] = config.retrieval.model_dump()
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


def run_eval(config: BotConfig, variants: list[str], data: str, *, name: str | None = None,
             limit: int | None = None, min_effect: float = 0.05,
             max_new_tokens: int | None = None, engine: Engine | None = None,
             encode: Callable | None | bool = True,
             extra_variants: dict[str, Variant] | None = None,
             progress: Callable[[str, int, int], None] | None = None,
             gate: str | None = None, write: bool = True) -> EvalResult:
    """Answer ``data`` with every variant (greedy), score, compare to ``variants[0]``, and
    write ``<data_dir>/evals/NAME/`` (report.md, report.html, metrics.json). ``gate`` is
    checked for every candidate (``result.gates``)."""
    parsed_gate = parse_gate(gate) if gate else None
    if len(variants) < 2 or len(set(variants)) != len(variants):
        raise InputError(f"--variants needs two or more distinct names (baseline first), got "
                         f"{','.join(variants)}")
    items = load_items(data, config.data_path, limit)
    embedder = None
    if engine is None or encode is True:
        from chatbot.indexing import open_embedder

        embedder = open_embedder(config)  # one copy for retrieval and semantic similarity
    engine = engine or eval_engine(config, extra_variants, embedder)
    for variant in variants:
        engine.variant(variant)  # unknown names fail before any generation
    name = name or Path(data).stem
    out_dir = config.data_path / "evals" / name
    settings = dataclasses.replace(engine.settings, temperature=0.0,
                                   max_new_tokens=max_new_tokens or engine.settings.max_new_tokens)
    state = index_state(config)
    run = generate_all(engine, items, variants, settings, GenerationCache(out_dir / CACHE_FILE),
                       state, progress)
    scores = score_run(items, run, embedder.encode if encode is True else (encode or None))
    result = EvalResult(name, data, items, variants, run, scores, summarize(scores),
                        compare(scores, variants[0], variants[1:], min_effect), min_effect)
    if state is None and any(run.settings[v]["retrieval"] for v in variants):
        result.warnings.append(f"no index in {config.data_path / 'index'}: retrieval variants "
                               "answered without sources; run `chatbot index sync` first")
    if parsed_gate:
        result.gates = [check_gate(result, parsed_gate, c) for c in result.candidates]
    if write:
        from training.eval_report import write_reports

        result.out_dir = out_dir
        write_reports(result, out_dir)
    return result


def run_gate(config: BotConfig, variants: list[str], data: str, gate: str,
             **kwargs) -> GateResult:
    """Evaluate and check ``gate`` for the last variant against the first; the reports are
    written either way. Pass ``extra_variants`` for an adapter not registered yet."""
    result = run_eval(config, variants, data, gate=gate, **kwargs)
    return result.gates[-1]


def gate_check(config: BotConfig, name: str, gate: str, data: str, baseline: str,
               limit: int | None = None) -> Callable[[Path], None]:
    """For ``chatbot train --eval-gate``: a check of a staged adapter against ``baseline``
    that raises (so the adapter is not registered) unless ``gate`` passes."""
    from chatbot.variants import adapter_manifest
    from training.errors import TrainingError

    def check(staged: Path) -> None:
        manifest = adapter_manifest(staged)
        base = config.variants.get(baseline)
        template = manifest.get("template") or (base.template if base else "rag")
        candidate = Variant(name, config.models.chat, template,
                            base.retrieval if base else True, base.k if base else None, staged)
        result = run_gate(config, [baseline, name], data, gate, limit=limit,
                          name=f"gate-{name}", extra_variants={name: candidate})
        if not result.passed:
            report = config.data_path / "evals" / f"gate-{name}" / "report.md"
            raise TrainingError(f"evaluation gate failed: {result.message}; {name!r} was not "
                                f"registered (report: {report})")

    return check
